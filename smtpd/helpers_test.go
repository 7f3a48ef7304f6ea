package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
	"github.com/portcullis-mail/portcullis/spool"
)

// testQueue is the real spool in a temporary directory, recording the ids it returned
// so that tests can read back, from disk, what was queued and in which order. err, when
// set, makes Enqueue fail (a full disk).
type testQueue struct {
	sp  *spool.Spool
	mu  sync.Mutex
	ids []string
	err error
}

type queued struct {
	ID   string
	Env  spool.Envelope
	Data []byte
}

func newTestQueue(t testing.TB) *testQueue {
	sp, err := spool.Open(t.TempDir(), spool.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return &testQueue{sp: sp}
}

func (q *testQueue) Enqueue(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error) {
	q.mu.Lock()
	err := q.err
	q.mu.Unlock()
	if err != nil {
		return "", err
	}
	id, err := q.sp.Enqueue(ctx, env, msg)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	q.ids = append(q.ids, id)
	q.mu.Unlock()
	return id, nil
}

func (q *testQueue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ids)
}

// messages reads every queued message back from the spool.
func (q *testQueue) messages() []queued {
	q.mu.Lock()
	ids := append([]string(nil), q.ids...)
	q.mu.Unlock()
	out := make([]queued, 0, len(ids))
	for _, id := range ids {
		env, m, err := q.sp.Open(id)
		if err != nil {
			panic(fmt.Sprintf("read back %s: %v", id, err))
		}
		data, err := io.ReadAll(m)
		m.Close()
		if err != nil {
			panic(fmt.Sprintf("read back %s: %v", id, err))
		}
		out = append(out, queued{ID: id, Env: env, Data: data})
	}
	return out
}

// users is a test Authenticator.
type users map[string]string

func (u users) Authenticate(_ context.Context, user, pass string, _ netip.Addr) (string, error) {
	if p, ok := u[user]; ok && p == pass {
		return user, nil
	}
	return "", auth.ErrInvalid
}

// rulesEngine compiles testdata/rules.yaml with the real policy engine.
func rulesEngine(t testing.TB) *policy.Engine {
	t.Helper()
	data, err := os.ReadFile("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := policy.ParseRules(data, "testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(policy.EngineConfig{Rules: specs, LocalDomains: []string{"example.test"}, Hostname: "mx.example.test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testServer is a running server on 127.0.0.1 with three listeners: mx, submission
// (STARTTLS) and submissions (implicit TLS).
type testServer struct {
	*smtpd.Server
	q   *testQueue
	cfg smtpd.Config
}

func (ts *testServer) addr(name string) string { return ts.Addr(name).String() }

// start runs a server; edit may change the config and deps first.
func start(t testing.TB, edit func(*smtpd.Config, *smtpd.Deps)) *testServer {
	t.Helper()
	q := newTestQueue(t)
	cfg := smtpd.Config{
		Hostname: "mx.example.test",
		DataDir:  t.TempDir(),
		Listeners: []smtpd.ListenerConfig{
			{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX},
			{Name: "submission", Addr: "127.0.0.1:0", Mode: smtpd.ModeSubmission},
			{Name: "submissions", Addr: "127.0.0.1:0", Mode: smtpd.ModeSubmissions},
		},
		LocalDomains:   []string{"example.test"},
		CommandTimeout: 10 * time.Second,
	}
	deps := smtpd.Deps{
		Engine: rulesEngine(t),
		Spool:  q,
		Auth:   users{"alice@example.test": "secret"},
		Logger: quietLogger(),
	}
	if edit != nil {
		edit(&cfg, &deps)
	}
	srv, err := smtpd.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(40 * time.Second):
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Errorf("Serve did not return after cancel; goroutines:\n%s", buf.String())
		}
	})
	return &testServer{Server: srv, q: q, cfg: cfg}
}

// dial connects to a listener and checks the greeting.
func dial(t testing.TB, addr string) *smtptest.Conn {
	t.Helper()
	c := connect(t, addr)
	c.Expect(t, "", 220)
	return c
}

// connect connects to a listener, closed when the test ends; the greeting is the
// caller's to read.
func connect(t testing.TB, addr string) *smtptest.Conn {
	t.Helper()
	c, err := smtptest.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialFrom connects from a chosen loopback address (Linux routes all of 127/8 to lo).
func dialFrom(t testing.TB, addr string, ip byte) *smtptest.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtptest.NewConn(nc)
	t.Cleanup(func() { c.Close() })
	return c
}

// authenticate takes c, greeted by a submission listener, through EHLO, STARTTLS and
// EHLO again to AUTH PLAIN as alice@example.test.
func authenticate(t testing.TB, c *smtptest.Conn) {
	t.Helper()
	c.Expect(t, "EHLO client.example.net", 250)
	if err := c.StartTLS(); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 235)
}

// waitFor polls cond for up to 5 s (for effects that follow a reply asynchronously).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

type knownRcpts map[string]bool

func (k knownRcpts) ValidRecipient(_ context.Context, a address.Address) (bool, error) {
	return k[a.Local], nil
}

func ptr[T any](v T) *T { return &v }

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// The real engine and spool are what the binary plugs in.
var (
	_ smtpd.Engine = (*policy.Engine)(nil)
	_ smtpd.Spool  = (*spool.Spool)(nil)
)
