package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store/maildir"
)

// rig is a spool, a maildir root and a queue manager running on them.
type rig struct {
	t      *testing.T
	dir    string
	sp     *spool.Spool
	md     *testMaildir
	q      *Manager
	cancel context.CancelFunc
	done   chan error
}

type rigOpts struct {
	cfg    Config
	users  []string
	remote Transport
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	md := newTestMaildir(filepath.Join(dir, "mail"), o.users...)
	router := testRouter(md, o.remote)
	if o.cfg.Hostname == "" {
		o.cfg.Hostname = "mx.example.test"
	}
	if o.cfg.Logger == nil {
		o.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	q, err := New(o.cfg, sp, router)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, dir: dir, sp: sp, md: md, q: q, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- q.Run(ctx) }()
	t.Cleanup(r.stop)
	// Return once the manager runs: messages its first rescan finds are backlog, not
	// arrivals, so a test's enqueues must come after it (a loaded CI machine once started
	// it after five enqueues of TestInflowBurstWaits).
	r.idle()
	return r
}

func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
		if err := <-r.done; err != nil {
			r.t.Error(err)
		}
		r.cancel = nil
		r.sp.Close()
	}
}

func (r *rig) enqueue(env spool.Envelope, body string) string {
	r.t.Helper()
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = time.Now()
	}
	id, err := r.sp.Enqueue(context.Background(), env, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

func (r *rig) idle() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.q.WaitIdle(ctx); err != nil {
		r.t.Fatal("queue did not become idle:", err)
	}
}

// mailbox returns the messages in addr's maildir.
func (r *rig) mailbox(addr string) []string {
	r.t.Helper()
	d, err := r.md.Path(addr)
	if err != nil {
		r.t.Fatal(err)
	}
	es, err := d.Scan()
	if err != nil && !os.IsNotExist(errors.Unwrap(err)) && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		f, err := d.Open(e)
		if err != nil {
			r.t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, string(b))
	}
	return out
}

// drain waits until the spool is empty, and fails with msg at the deadline.
func (r *rig) drain(deadline time.Time, msg string) {
	r.t.Helper()
	for len(r.queued()) > 0 {
		if time.Now().After(deadline) {
			r.t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) queued() []string {
	ids, err := r.sp.List()
	if err != nil {
		r.t.Fatal(err)
	}
	return ids
}

const body = "From: alice@example.org\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nHello Bob.\r\n"

func TestLocalDeliveryEndToEnd(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"bob@example.test", "carol@example.test"}})
	for i := range 20 {
		r.enqueue(spool.Envelope{From: "alice@example.org", To: []string{"bob@example.test", "Carol+lists@Example.TEST"}}, body+fmt.Sprint(i)+"\r\n")
	}
	r.idle()
	if q := r.queued(); len(q) != 0 {
		t.Fatalf("queue not empty after delivery: %v", q)
	}
	bob, carol := r.mailbox("bob@example.test"), r.mailbox("carol@example.test")
	if len(bob) != 20 || len(carol) != 20 {
		t.Fatalf("bob has %d, carol %d messages; want 20 each", len(bob), len(carol))
	}
	m, err := mail.ReadMessage(strings.NewReader(carol[0]))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Return-Path") != "<alice@example.org>" || m.Header.Get("Delivered-To") != "Carol+lists@Example.TEST" || m.Header.Get("Subject") != "hello" {
		t.Fatalf("header = %v", m.Header)
	}
	// The maildir is a real one: tmp is empty, files are in new.
	d, _ := r.md.Path("bob@example.test")
	if tmp, _ := os.ReadDir(filepath.Join(string(d), maildir.Tmp)); len(tmp) != 0 {
		t.Fatalf("maildir tmp holds %d files", len(tmp))
	}
}

// dsnOf parses a DSN and returns its human part, its delivery-status part and the
// content type of the returned message.
func dsnOf(t *testing.T, raw string) (human, status, retType string, hdr mail.Header) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts []string
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, string(b))
		types = append(types, p.Header.Get("Content-Type"))
	}
	if len(parts) != 3 || types[1] != "message/delivery-status" {
		t.Fatalf("DSN parts %v", types)
	}
	return parts[0], parts[1], types[2], m.Header
}

func TestUnknownUserBounces(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"bob@example.test", "alice@example.test"}})
	r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"bob@example.test", "nobody@example.test"}, EnvID: "env-42"}, body)
	r.idle()
	if q := r.queued(); len(q) != 0 {
		t.Fatalf("queue = %v", q)
	}
	if n := len(r.mailbox("bob@example.test")); n != 1 {
		t.Fatalf("bob has %d messages", n)
	}
	got := r.mailbox("alice@example.test")
	if len(got) != 1 {
		t.Fatalf("alice has %d messages, want the bounce", len(got))
	}
	human, status, retType, hdr := dsnOf(t, got[0])
	if hdr.Get("Return-Path") != "<>" || !strings.HasPrefix(hdr.Get("From"), "Mail Delivery System <MAILER-DAEMON@mx.example.test>") || hdr.Get("Auto-Submitted") != "auto-replied" {
		t.Fatalf("bounce header %v", hdr)
	}
	for _, want := range []string{"Reporting-MTA: dns; mx.example.test", "Original-Envelope-Id: env-42", "Final-Recipient: rfc822; nobody@example.test", "Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "bob@example.test") || !strings.Contains(human, "nobody@example.test") {
		t.Errorf("DSN reports the wrong recipients:\n%s\n%s", human, status)
	}
	if retType != "text/rfc822-headers" {
		t.Errorf("returned part %q, want headers only without RET=FULL", retType)
	}
}

func TestNoBounceToNullSenderOrNotifyNever(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"bob@example.test", "alice@example.test"}})
	r.enqueue(spool.Envelope{From: "", To: []string{"nobody@example.test"}}, body)
	r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"nobody@example.test"}, Notify: map[string]string{"nobody@example.test": "NEVER"}}, body)
	r.idle()
	if q := r.queued(); len(q) != 0 {
		t.Fatalf("queue = %v", q)
	}
	if n := len(r.mailbox("alice@example.test")); n != 0 {
		t.Fatalf("alice got %d bounces, want none", n)
	}
}

func TestRetFullReturnsMessage(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"alice@example.test"}})
	r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"nobody@example.test"}, Ret: "FULL"}, body)
	r.idle()
	got := r.mailbox("alice@example.test")
	if len(got) != 1 {
		t.Fatalf("alice has %d messages", len(got))
	}
	_, _, retType, _ := dsnOf(t, got[0])
	if retType != "message/rfc822" || !strings.Contains(got[0], "Hello Bob.") {
		t.Fatalf("RET=FULL returned %q", retType)
	}
}

func TestMailLoopDetected(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"alice@example.test", "bob@example.test"}, cfg: Config{MaxReceived: 5}})
	loop := strings.Repeat("Received: from a by b; Mon, 23 Nov 2026 10:00:00 +0000\r\n", 6) + body
	r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"bob@example.test"}}, loop)
	r.idle()
	if n := len(r.mailbox("bob@example.test")); n != 0 {
		t.Fatalf("looping message delivered %d times", n)
	}
	got := r.mailbox("alice@example.test")
	if len(got) != 1 {
		t.Fatalf("alice has %d messages, want the bounce", len(got))
	}
	if _, status, _, _ := dsnOf(t, got[0]); !strings.Contains(status, "Status: 5.4.6") {
		t.Fatalf("status:\n%s", status)
	}
}

func TestExpiredMessageBounces(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"alice@example.test"}, remote: flaky(1 << 30)})
	old := time.Now().Add(-6 * 24 * time.Hour)
	r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"someone@remote.example"}, ReceivedAt: old}, body)
	r.idle()
	if q := r.queued(); len(q) != 0 {
		t.Fatalf("expired message still queued: %v", q)
	}
	got := r.mailbox("alice@example.test")
	if len(got) != 1 {
		t.Fatalf("alice has %d messages", len(got))
	}
	if _, status, _, _ := dsnOf(t, got[0]); !strings.Contains(status, "Action: failed") || !strings.Contains(status, "Status: 4.4.7") {
		t.Fatalf("status:\n%s", status)
	}
}

// flakyTransport stands in for a remote MTA (the SMTP relay is not written yet): it
// answers 451 to the first n attempts of each recipient, then accepts and records.
type flakyTransport struct {
	mu        sync.Mutex
	failFirst int
	tries     map[string]int
	got       map[string]int
	active    map[string]int
	maxActive int
	hold      time.Duration
}

func flaky(n int) *flakyTransport {
	return &flakyTransport{failFirst: n, tries: map[string]int{}, got: map[string]int{}, active: map[string]int{}}
}

func (f *flakyTransport) Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []Result {
	dest := address.Domain(rcpts[0])
	f.mu.Lock()
	f.active[dest]++
	f.maxActive = max(f.maxActive, f.active[dest])
	f.mu.Unlock()
	if f.hold > 0 {
		select {
		case <-time.After(f.hold):
		case <-ctx.Done():
		}
	}
	b, err := io.ReadAll(msg)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active[dest]--
	out := make([]Result, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
		f.tries[r]++
		switch {
		case err != nil:
			out[i].Err = err
		case ctx.Err() != nil:
			out[i].Err = ctx.Err()
		case f.tries[r] <= f.failFirst:
			out[i].Err = errors.New("451 4.3.0 try again later")
		case strings.HasPrefix(r, "reject"):
			out[i].Err = Permanent("550 5.7.1 rejected by remote", nil)
		default:
			if len(b) != int(env.Size) {
				out[i].Err = fmt.Errorf("read %d of %d bytes", len(b), env.Size)
			}
			f.got[r]++
			out[i].Reply = "250 2.0.0 queued as X"
		}
	}
	return out
}

func TestDeferThenDeliverWithBackoff(t *testing.T) {
	remote := flaky(2)
	r := newRig(t, rigOpts{remote: remote, cfg: Config{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	id := r.enqueue(spool.Envelope{From: "alice@example.org", To: []string{"x@remote.example", "y@remote.example"}}, body)
	// After the first attempt the message is deferred with a record per recipient.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := r.sp.Status(id)
		if err == nil && st.Attempts >= 1 {
			if st.Rcpts["x@remote.example"].State != spool.Deferred || st.NextAttempt.IsZero() {
				t.Fatalf("after one attempt: %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no deferral recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.drain(deadline, "message not delivered after retries")
	remote.mu.Lock()
	defer remote.mu.Unlock()
	if remote.got["x@remote.example"] != 1 || remote.got["y@remote.example"] != 1 || remote.tries["x@remote.example"] != 3 {
		t.Fatalf("tries %v, delivered %v", remote.tries, remote.got)
	}
}

func TestPartialFailureKeepsState(t *testing.T) {
	remote := flaky(0)
	r := newRig(t, rigOpts{remote: remote, users: []string{"alice@example.test"}})
	r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"ok@remote.example", "reject@remote.example"}}, body)
	r.idle()
	if q := r.queued(); len(q) != 0 {
		t.Fatalf("queue = %v", q)
	}
	if got := r.mailbox("alice@example.test"); len(got) != 1 || !strings.Contains(got[0], "reject@remote.example") || strings.Contains(got[0], "Final-Recipient: rfc822; ok@") {
		t.Fatalf("bounce: %q", got)
	}
}

func TestPerDestinationConcurrency(t *testing.T) {
	remote := flaky(0)
	remote.hold = 30 * time.Millisecond
	r := newRig(t, rigOpts{remote: remote, cfg: Config{Concurrency: 8, PerDestination: 2}})
	for i := range 12 {
		r.enqueue(spool.Envelope{From: "alice@example.org", To: []string{fmt.Sprintf("u%d@remote.example", i)}}, body)
	}
	deadline := time.Now().Add(20 * time.Second)
	r.drain(deadline, "not delivered")
	remote.mu.Lock()
	defer remote.mu.Unlock()
	if remote.maxActive != 2 || len(remote.got) != 12 {
		t.Fatalf("max concurrent deliveries to one destination = %d (want 2), delivered %d", remote.maxActive, len(remote.got))
	}
}

func TestDelayWarning(t *testing.T) {
	remote := flaky(1 << 30)
	r := newRig(t, rigOpts{remote: remote, users: []string{"alice@example.test"}, cfg: Config{DelayWarning: time.Hour}})
	id := r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"x@remote.example"}, ReceivedAt: time.Now().Add(-2 * time.Hour)}, body)
	r.idle()
	got := r.mailbox("alice@example.test")
	if len(got) != 1 {
		t.Fatalf("alice has %d messages, want one delay warning", len(got))
	}
	if _, status, _, hdr := dsnOf(t, got[0]); !strings.Contains(status, "Action: delayed") || !strings.Contains(status, "Will-Retry-Until:") || !strings.Contains(hdr.Get("Subject"), "Delayed") {
		t.Fatalf("warning:\n%s", status)
	}
	st, _ := r.sp.Status(id)
	if !st.Warned || st.NextAttempt.Before(time.Now()) {
		t.Fatalf("status after warning: %+v", st)
	}
	// Another attempt does not warn again.
	if err := r.sp.Flush(id); err != nil {
		t.Fatal(err)
	}
	if err := r.q.rescan(); err != nil {
		t.Fatal(err)
	}
	r.idle()
	if st, _ := r.sp.Status(id); st.Attempts != 2 {
		t.Fatalf("attempts = %d after flush", st.Attempts)
	}
	if n := len(r.mailbox("alice@example.test")); n != 1 {
		t.Fatalf("alice has %d messages after the second attempt", n)
	}
}

func TestHoldReleaseAndQuarantine(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"bob@example.test"}})
	r.stop() // start with the manager stopped, as the admin commands run in another process
	sp, err := spool.Open(filepath.Join(r.dir, "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r.sp = sp
	held := r.enqueue(spool.Envelope{From: "a@example.org", To: []string{"bob@example.test"}}, body)
	quar := r.enqueue(spool.Envelope{From: "a@example.org", To: []string{"bob@example.test"}, Quarantine: true}, body)
	if err := sp.Hold(held); err != nil {
		t.Fatal(err)
	}
	router := testRouter(r.md, nil)
	q, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sp, router)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	defer func() { cancel(); <-done; sp.Close() }()
	wait := func() {
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer wcancel()
		if err := q.WaitIdle(wctx); err != nil {
			t.Fatal(err)
		}
	}
	wait()
	if n := len(r.mailbox("bob@example.test")); n != 0 {
		t.Fatalf("held and quarantined messages delivered: %d", n)
	}
	for _, id := range []string{held, quar} {
		if st, err := sp.Status(id); err != nil || !st.Held {
			t.Fatalf("%s: %+v, %v; want held", id, st, err)
		}
		if err := sp.Release(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.rescan(); err != nil {
		t.Fatal(err)
	}
	wait()
	if n := len(r.mailbox("bob@example.test")); n != 2 {
		t.Fatalf("after release bob has %d messages, want 2", n)
	}
	if ids, _ := sp.List(); len(ids) != 0 {
		t.Fatalf("queue = %v", ids)
	}
}

func TestShutdownKeepsUndelivered(t *testing.T) {
	remote := flaky(0)
	remote.hold = 10 * time.Second
	r := newRig(t, rigOpts{remote: remote})
	id := r.enqueue(spool.Envelope{From: "a@example.org", To: []string{"x@remote.example"}}, body)
	for {
		remote.mu.Lock()
		n := remote.active["remote.example"]
		remote.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	start := time.Now()
	r.stop()
	if time.Since(start) > 5*time.Second {
		t.Fatal("Run did not stop promptly")
	}
	sp, err := spool.Open(filepath.Join(r.dir, "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	st, err := sp.Status(id)
	if err != nil || st.Attempts != 0 || !st.NextAttempt.IsZero() {
		t.Fatalf("after shutdown: %+v %v (the interrupted attempt must not count)", st, err)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	q, _ := New(Config{MinBackoff: time.Minute, MaxBackoff: 10 * time.Minute}, &spool.Spool{}, RouterFunc(nil))
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 4: 8 * time.Minute, 5: 10 * time.Minute, 50: 10 * time.Minute} {
		for range 20 {
			d := q.backoff(n)
			if d < want*3/4 || d > want*5/4 {
				t.Fatalf("backoff(%d) = %v, want %v ±25%%", n, d, want)
			}
		}
	}
}

func TestAdminDeleteFromAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	id, err := sp.Enqueue(context.Background(), spool.Envelope{From: "a@example.org", To: []string{"bob@example.test"}}, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// `portcullis queue delete ID` attaches to the owner's spool.
	adm, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Delete(id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	adm.Close()
	md := newTestMaildir(filepath.Join(dir, "mail"))
	router := testRouter(md, nil)
	q, _ := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sp, router)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	err = q.WaitIdle(wctx)
	wcancel()
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := sp.List(); len(ids) != 0 {
		t.Fatalf("queue = %v", ids)
	}
	box, _ := md.Path("bob@example.test")
	if es, _ := box.Scan(); len(es) != 0 {
		t.Fatal("deleted message was delivered")
	}
}

func TestQueueCommandsReachRunningManager(t *testing.T) {
	remote := flaky(1)
	r := newRig(t, rigOpts{remote: remote, cfg: Config{MinBackoff: time.Hour, Rescan: time.Hour}})
	id := r.enqueue(spool.Envelope{From: "a@example.org", To: []string{"x@remote.example"}}, body)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, _ := r.sp.Status(id); st.Attempts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first attempt not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Deferred for an hour; `portcullis queue flush ID` from another process.
	adm, err := spool.Open(r.sp.Dir(), spool.Config{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Flush(id); err != nil {
		t.Fatal(err)
	}
	adm.Close()
	r.drain(deadline, "flushed message not delivered: the running manager did not notice")
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRig(t, rigOpts{users: []string{"bob@example.test", "alice@example.test"}, cfg: Config{Metrics: reg}})
	r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"bob@example.test", "nobody@example.test"}}, body)
	r.idle()
	want := map[string]float64{`delivered`: 2, `failed`: 1} // bob, then alice's bounce; nobody failed
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	dsn := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "portcullis_delivery_results_total":
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			case "portcullis_delivery_dsn_total":
				dsn += m.GetCounter().GetValue()
			}
		}
	}
	if got["delivered"] != want["delivered"] || got["failed"] != want["failed"] || dsn != 1 {
		t.Fatalf("results %v, dsn %v", got, dsn)
	}
}

func TestDuplicateRecipientGetsOneCopy(t *testing.T) {
	r := newRig(t, rigOpts{users: []string{"bob@example.test"}})
	r.enqueue(spool.Envelope{From: "a@example.org", To: []string{"bob@example.test", "bob@example.test"}}, body)
	r.idle()
	if n := len(r.mailbox("bob@example.test")); n != 1 {
		t.Fatalf("bob got %d copies", n)
	}
	if q := r.queued(); len(q) != 0 {
		t.Fatalf("queue = %v", q)
	}
}

// A burst of arrivals faster than InflowRate is accepted first: its deliveries wait until
// the inflow calms down (here: the burst ends) or InflowDelay passes, and the queue is not
// idle meanwhile.
func TestInflowBurstWaits(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRig(t, rigOpts{cfg: Config{InflowRate: 1, InflowDelay: 1500 * time.Millisecond, Metrics: reg}})
	busy := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "portcullis_delivery_inflow_busy" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no portcullis_delivery_inflow_busy metric")
		return 0
	}
	const n = 30
	for range n {
		r.enqueue(spool.Envelope{From: "alice@example.org", To: []string{"bob@example.test"}}, body)
	}
	// At 1 a second the first arrival makes the inflow busy (without the wait, 5 to 20 of
	// the 30 are delivered by the time the last is queued).
	if got := len(r.mailbox("bob@example.test")); got > 1 {
		t.Fatalf("%d of a burst of %d delivered while it was arriving", got, n)
	}
	if b := busy(); b != 1 {
		t.Fatalf("portcullis_delivery_inflow_busy = %v during the burst", b)
	}
	r.idle()
	if b := busy(); b != 0 {
		t.Fatalf("portcullis_delivery_inflow_busy = %v once delivered", b)
	}
	if got := len(r.mailbox("bob@example.test")); got != n {
		t.Fatalf("queue idle with %d of %d delivered", got, n)
	}
}

func TestInflowDelayOff(t *testing.T) {
	r := newRig(t, rigOpts{cfg: Config{InflowRate: 1, InflowDelay: -1}})
	for range 10 {
		r.enqueue(spool.Envelope{From: "alice@example.org", To: []string{"bob@example.test"}}, body)
	}
	r.idle()
	if got := len(r.mailbox("bob@example.test")); got != 10 {
		t.Fatalf("delivered %d of 10", got)
	}
}
