package smtpd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/local"
	"github.com/portcullis-mail/portcullis/imapd"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

// lmtpEnv is an LMTP listener delivering into a real store through the real
// StoreDeliverer, with users alice, bob and carol and a quota of quota bytes.
type lmtpEnv struct {
	*testServer
	st  *store.Store
	del *local.Deliverer
}

var lmtpUsers = knownRcpts{"alice": true, "bob": true, "carol": true, "dave": true}

func startLMTP(t testing.TB, quota int64, edit func(*smtpd.Config, *smtpd.Deps)) *lmtpEnv {
	t.Helper()
	st, err := store.New(store.Config{Dir: t.TempDir(), Quota: bytesize.Size(quota)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	del, err := local.New(local.Config{Store: st, Exists: func(_ context.Context, a string) (bool, error) {
		local, _, _ := strings.Cut(a, "@")
		return lmtpUsers[local], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, func(cfg *smtpd.Config, deps *smtpd.Deps) {
		cfg.Listeners = []smtpd.ListenerConfig{{Name: "lmtp", Addr: "127.0.0.1:0", Mode: smtpd.ModeLMTP}}
		cfg.TrustedNetworks = []string{"127.0.0.0/8"}
		deps.Local = del
		deps.Quota = del.CheckQuota
		deps.Recipients = storeUsers{del}
		deps.Auth = nil
		if edit != nil {
			edit(cfg, deps)
		}
	})
	return &lmtpEnv{testServer: ts, st: st, del: del}
}

// storeUsers validates recipients as the deliverer will: user+tag is user.
type storeUsers struct{ d *local.Deliverer }

func (s storeUsers) ValidRecipient(_ context.Context, a address.Address) (bool, error) {
	u, err := s.d.User(a.String())
	if err != nil {
		return false, nil
	}
	local, _, _ := strings.Cut(u, "@")
	return lmtpUsers[local], nil
}

// mailbox returns the messages in user's INBOX, read through the store.
func (e *lmtpEnv) mailbox(t *testing.T, user string) []string {
	t.Helper()
	ctx := context.Background()
	u, err := e.st.Open(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	mb, msgs, err := u.Messages(ctx, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		f, err := u.Open(mb, m)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, string(b))
	}
	return out
}

// fill puts n bytes of mail into user's mailbox.
func (e *lmtpEnv) fill(t *testing.T, user string, n int) {
	t.Helper()
	if _, err := e.st.Deliver(context.Background(), user, "", strings.NewReader(smtptest.Message("x@example.net", user, "filler", n)), nil); err != nil {
		t.Fatal(err)
	}
}

// Our own LMTP client (delivery/lmtp, the queue's transport) delivering to our LMTP
// listener: one known recipient, one unknown, one over quota; each its own result.
func TestLMTPPerRecipientWithOurClient(t *testing.T) {
	e := startLMTP(t, 20000, nil)
	e.fill(t, "carol@example.test", 19000)

	c, err := lmtp.New(lmtp.Config{LocalName: "front.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := smtptest.Message("sender@example.net", "alice@example.test", "hello over lmtp", 2000)
	rcpts := []string{"alice+news@example.test", "nobody@example.test", "carol@example.test"}
	ctx, cancel := contextWithTimeout(20 * time.Second)
	defer cancel()
	res, err := c.Deliver(ctx, e.addr("lmtp"), "sender@example.net", rcpts, strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	want := []struct {
		status lmtp.Status
		reply  string
	}{
		{lmtp.Delivered, "250 2.0.0"},
		{lmtp.Permanent, "550 5.1.1"},
		{lmtp.Temporary, "452 4.2.2"}, // the client announced SIZE: refused at RCPT
	}
	for i, r := range res {
		if r.Status != want[i].status || !strings.HasPrefix(r.Reply, want[i].reply) {
			t.Errorf("%s: status %v reply %q, want %v %s", r.Rcpt, r.Status, r.Reply, want[i].status, want[i].reply)
		}
	}
	got := e.mailbox(t, "alice@example.test")
	if len(got) != 1 || !strings.HasSuffix(got[0], msg) {
		t.Fatalf("alice's INBOX: %d messages", len(got))
	}
	for _, h := range []string{"Return-Path: <sender@example.net>\r\n", "Delivered-To: alice+news@example.test\r\n", "with LMTP id "} {
		if !strings.Contains(got[0], h) {
			t.Errorf("delivered message lacks %q:\n%s", h, got[0][:min(len(got[0]), 600)])
		}
	}
	if n := len(e.mailbox(t, "carol@example.test")); n != 1 {
		t.Errorf("carol has %d messages, want the filler only", n)
	}
}

// Without SIZE the quota is only known at the end of DATA: one 250 and one 452 in the
// same reply set, in RCPT order (RFC 2033 §4.2), and a data-stage rejection is every
// recipient's reply.
func TestLMTPStatusesAtData(t *testing.T) {
	e := startLMTP(t, 20000, nil)
	e.fill(t, "carol@example.test", 17000)
	c := dial(t, e.addr("lmtp"))
	c.Expect(t, "EHLO front.example.test", 500) // LMTP speaks LHLO only
	r := c.Expect(t, "LHLO front.example.test", 250)
	if r.Has("AUTH") {
		t.Errorf("AUTH offered over LMTP: %v", r)
	}
	c.Expect(t, "MAIL FROM:<sender@example.net>", 250)
	c.Expect(t, "RCPT TO:<alice@example.test>", 250)
	c.Expect(t, "RCPT TO:<carol@example.test>", 250)   // 3000 bytes left
	c.Expect(t, "RCPT TO:<elsewhere@other.test>", 550) // not a user here (no relaying)
	c.Expect(t, "DATA", 354)
	msg := smtptest.Message("sender@example.net", "alice@example.test", "big", 5000)
	if err := c.Send(msg + ".\r\n"); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, "", 250)
	r = c.Expect(t, "", 452)
	if r.Enhanced() != "4.2.2" || !strings.Contains(r.Text(), "<carol@example.test>") {
		t.Errorf("carol's status %v", r)
	}
	if n := len(e.mailbox(t, "alice@example.test")); n != 1 {
		t.Fatalf("alice has %d messages", n)
	}

	// The rules run once; their rejection answers for everyone.
	c.Transaction(t, "sender@example.net", []string{"alice@example.test", "bob@example.test"}, smtptest.Message("sender@example.net", "alice@example.test", "SPAM", 100))
	for range 2 {
		if r := c.Expect(t, "", 554); r.Enhanced() != "5.7.9" {
			t.Errorf("reply %v", r)
		}
	}
	// Discard: 250 for each, nothing stored.
	// bob twice: two statuses, one copy.
	c.Transaction(t, "sender@example.net", []string{"bob@example.test", "bob@example.test"}, smtptest.Message("sender@example.net", "bob@example.test", "discard me", 100))
	c.Expect(t, "", 250)
	c.Expect(t, "", 250)
	// And a plain message to bob given twice is stored once.
	c.Transaction(t, "", []string{"bob@example.test", "bob@example.test"}, smtptest.Message("mailer-daemon@example.net", "bob@example.test", "twice", 100))
	c.Expect(t, "", 250)
	c.Expect(t, "", 250)
	c.Expect(t, "QUIT", 221)
	got := e.mailbox(t, "bob@example.test")
	if len(got) != 1 || !strings.HasPrefix(got[0], "Return-Path: <>\r\nDelivered-To: bob@example.test\r\n") {
		t.Fatalf("bob's INBOX: %d messages: %q", len(got), got)
	}

	// Quarantine goes to the queue (held there), not to the mailbox.
	c = dial(t, e.addr("lmtp"))
	c.Expect(t, "LHLO front.example.test", 250)
	c.Transaction(t, "sender@example.net", []string{"alice@example.test"}, smtptest.Message("sender@example.net", "alice@example.test", "quarantine me", 100))
	c.Expect(t, "", 250)
	if q := e.q.messages(); len(q) != 1 || !q[0].Env.Quarantine {
		t.Fatalf("queue %+v, want one quarantined message", q)
	}
	if n := len(e.mailbox(t, "alice@example.test")); n != 1 {
		t.Fatalf("alice has %d messages", n)
	}
}

// Only trusted networks may speak LMTP over TCP.
func TestLMTPRefusesUntrusted(t *testing.T) {
	e := startLMTP(t, 0, func(cfg *smtpd.Config, _ *smtpd.Deps) { cfg.TrustedNetworks = []string{"10.0.0.0/8"} })
	c := connect(t, e.addr("lmtp"))
	r, err := c.ReadReply()
	if err != nil || r.Code != 554 || r.Enhanced() != "5.7.1" {
		t.Fatalf("greeting %v, %v; want 554 5.7.1", r, err)
	}
}

// A unix socket: our client delivers through it, and a stale socket left by a dead
// server does not stop the next one.
func TestLMTPUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	e := startLMTP(t, 0, func(cfg *smtpd.Config, _ *smtpd.Deps) {
		cfg.Listeners = []smtpd.ListenerConfig{{Name: "lmtp", Addr: "unix:" + sock, Mode: smtpd.ModeLMTP}}
		cfg.TrustedNetworks = nil // a unix socket is trusted by its permissions
	})
	c, err := lmtp.New(lmtp.Config{DisableReuse: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := smtptest.Message("sender@example.net", "bob@example.test", "via unix", 500)
	ctx, cancel := contextWithTimeout(20 * time.Second)
	defer cancel()
	res, err := c.Deliver(ctx, "unix:"+sock, "sender@example.net", []string{"bob@example.test", "nobody@example.test"}, strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != lmtp.Delivered || res[1].Status != lmtp.Permanent {
		t.Fatalf("results %+v", res)
	}
	got := e.mailbox(t, "bob@example.test")
	if len(got) != 1 || !strings.Contains(got[0], "Subject: via unix") {
		t.Fatalf("bob's INBOX %q", got)
	}
	if !strings.Contains(got[0], "(local unix socket)\r\n\tby mx.example.test (portcullis) with LMTP id ") {
		t.Errorf("Received header:\n%s", got[0][:min(400, len(got[0]))])
	}
}

// BDAT (CHUNKING) ends with one status per recipient as DATA does.
func TestLMTPBDAT(t *testing.T) {
	e := startLMTP(t, 20000, nil)
	e.fill(t, "carol@example.test", 17000)
	c := dial(t, e.addr("lmtp"))
	if r := c.Expect(t, "LHLO front.example.test", 250); !r.Has("CHUNKING") {
		t.Fatalf("no CHUNKING in %v", r)
	}
	c.Expect(t, "MAIL FROM:<sender@example.net>", 250)
	c.Expect(t, "RCPT TO:<alice@example.test>", 250)
	c.Expect(t, "RCPT TO:<carol@example.test>", 250)
	msg := smtptest.Message("sender@example.net", "alice@example.test", "chunked", 5000)
	half := len(msg) / 2
	for _, chunk := range []string{fmt.Sprintf("BDAT %d\r\n%s", half, msg[:half]), fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-half, msg[half:])} {
		if err := c.Send(chunk); err != nil {
			t.Fatal(err)
		}
		c.Expect(t, "", 250)
	}
	if r := c.Expect(t, "", 452); !strings.Contains(r.Text(), "<carol@example.test>") {
		t.Errorf("carol: %v", r)
	}
	got := e.mailbox(t, "alice@example.test")
	if len(got) != 1 || !strings.HasSuffix(got[0], msg) {
		t.Fatalf("alice's INBOX: %d messages", len(got))
	}
}

// The MX listener uses the same quota hook with the SIZE parameter.
func TestMXQuotaAtRcpt(t *testing.T) {
	e := startLMTP(t, 10000, func(cfg *smtpd.Config, _ *smtpd.Deps) {
		cfg.Listeners = []smtpd.ListenerConfig{{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX}}
		cfg.TrustedNetworks = nil
	})
	e.fill(t, "carol@example.test", 9000)
	c := dial(t, e.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<sender@example.net> SIZE=2000", 250)
	c.Expect(t, "RCPT TO:<alice@example.test>", 250)
	if r := c.Expect(t, "RCPT TO:<carol@example.test>", 452); r.Enhanced() != "4.2.2" {
		t.Errorf("reply %v", r)
	}
	c.Expect(t, "RSET", 250)
	c.Expect(t, "MAIL FROM:<sender@example.net> SIZE=500", 250)
	c.Expect(t, "RCPT TO:<carol@example.test>", 250)
}

func TestLMTPConfigErrors(t *testing.T) {
	q := newTestQueue(t)
	for _, tc := range []struct {
		name string
		cfg  smtpd.Config
		deps smtpd.Deps
	}{
		{"no local deliverer", smtpd.Config{Listeners: []smtpd.ListenerConfig{{Addr: ":0", Mode: smtpd.ModeLMTP}}}, smtpd.Deps{Spool: q}},
		{"unix socket on mx", smtpd.Config{Listeners: []smtpd.ListenerConfig{{Addr: "unix:/tmp/x", Mode: smtpd.ModeMX}}}, smtpd.Deps{Spool: q}},
		{"relative socket", smtpd.Config{Listeners: []smtpd.ListenerConfig{{Addr: "unix:x", Mode: smtpd.ModeLMTP}}}, smtpd.Deps{Local: nopLocal{}}},
		{"auth on lmtp", smtpd.Config{Listeners: []smtpd.ListenerConfig{{Addr: ":0", Mode: smtpd.ModeLMTP, RequireAuth: ptr(true)}}}, smtpd.Deps{Local: nopLocal{}, Auth: users{}}},
		{"mx without queue", smtpd.Config{Listeners: []smtpd.ListenerConfig{{Addr: ":0", Mode: smtpd.ModeLMTP}, {Addr: ":0", Mode: smtpd.ModeMX}}}, smtpd.Deps{Local: nopLocal{}}},
	} {
		if _, err := smtpd.New(tc.cfg, tc.deps); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	// LMTP alone needs no queue.
	if _, err := smtpd.New(smtpd.Config{Listeners: []smtpd.ListenerConfig{{Addr: "unix:/run/lmtp", Mode: smtpd.ModeLMTP}}}, smtpd.Deps{Local: nopLocal{}}); err != nil {
		t.Errorf("lmtp without queue: %v", err)
	}
}

type nopLocal struct{}

func (nopLocal) Deliver(context.Context, string, spool.Envelope, io.Reader) error { return nil }

// An IMAP session idling on the INBOX sees the message delivered over LMTP at once.
func TestLMTPDeliveryWakesIMAPIdle(t *testing.T) {
	e := startLMTP(t, 0, nil)
	imap, err := imapd.New(imapd.Config{Trusted: true}, e.st, users{"alice@example.test": "secret"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go imap.Serve(ln)
	defer imap.Close()

	var mu sync.Mutex
	var exists []uint32
	h := &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
		if d.NumMessages != nil {
			mu.Lock()
			exists = append(exists, *d.NumMessages)
			mu.Unlock()
		}
	}}
	ic, err := imapclient.DialInsecure(ln.Addr().String(), &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("alice@example.test", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := ic.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	c, _ := lmtp.New(lmtp.Config{})
	defer c.Close()
	msg := smtptest.Message("sender@example.net", "alice@example.test", "wake up", 300)
	ctx, cancel := contextWithTimeout(20 * time.Second)
	defer cancel()
	res, err := c.Deliver(ctx, e.addr("lmtp"), "sender@example.net", []string{"alice@example.test"}, strings.NewReader(msg), int64(len(msg)))
	if err != nil || res[0].Status != lmtp.Delivered {
		t.Fatalf("Deliver: %v %+v", err, res)
	}
	waitFor(t, "IDLE to see EXISTS 1", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(exists, 1)
	})
}

// TestLMTPDeliveriesRecorded: each recipient an LMTP listener delivers (or cannot) is
// an answer for the decision log, marked delivered, with the delivery's reply.
func TestLMTPDeliveriesRecorded(t *testing.T) {
	rec := &lmtpRecorder{}
	e := startLMTP(t, 20000, func(_ *smtpd.Config, d *smtpd.Deps) { d.Decisions = rec })
	e.fill(t, "carol@example.test", 17000)
	c := dial(t, e.addr("lmtp"))
	c.Expect(t, "LHLO front.example.test", 250)
	c.Transaction(t, "sender@example.net", []string{"alice@example.test", "carol@example.test"},
		smtptest.Message("sender@example.net", "alice@example.test", "big", 5000))
	c.Expect(t, "", 250)
	c.Expect(t, "", 452)
	c.Expect(t, "QUIT", 221)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 2 ||
		!strings.HasPrefix(rec.got[0], "alice@example.test delivered=true verdict=accept category= reply=250 2.0.0 OK delivered") ||
		!strings.HasPrefix(rec.got[1], "carol@example.test delivered=true verdict=tempfail category=delivery reply=452 4.2.2") {
		t.Errorf("records:\n%s", strings.Join(rec.got, "\n"))
	}
}

type lmtpRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *lmtpRecorder) RecordDecision(ev *smtpd.DecisionEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fmt.Sprintf("%s delivered=%t verdict=%s category=%s reply=%s",
		strings.Join(ev.Rcpts, ","), ev.Delivered, ev.Decision.Verdict, ev.Decision.Category, ev.Reply))
}
