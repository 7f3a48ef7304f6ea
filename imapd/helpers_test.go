package imapd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/store"
)

type env struct {
	store *store.Store
	srv   *Server
	addr  string
	tls   *tls.Config
	cert  string
}

func start(t *testing.T, cfg Config) *env {
	t.Helper()
	return startWith(t, cfg, store.Config{})
}

func startWith(t *testing.T, cfg Config, scfg store.Config) *env {
	t.Helper()
	return startLog(t, cfg, scfg, slog.New(slog.DiscardHandler))
}

// startLogged is startWith with the server's log in the returned buffer (Debug and up).
func startLogged(t *testing.T, cfg Config, scfg store.Config) (*env, *testenv.LockedBuffer) {
	t.Helper()
	logs := &testenv.LockedBuffer{}
	return startLog(t, cfg, scfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), logs
}

// startLog runs a server over a new store on loopback, with mailboxtest.Users and, unless
// cfg has one, the TLS config of a new self-signed certificate.
func startLog(t *testing.T, cfg Config, scfg store.Config, log *slog.Logger) *env {
	t.Helper()
	st := mailboxtest.Store(t, scfg)
	tc, cp := mailboxtest.Cert(t)
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = tc
	}
	srv, err := New(cfg, st, mailboxtest.Users, log)
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: st, srv: srv, addr: mailboxtest.Serve(t, srv), tls: tc, cert: cp}
}

func (e *env) deliver(t *testing.T, user, msg string) uint32 {
	t.Helper()
	return mailboxtest.Deliver(t, e.store, user, msg)
}

// raw is a line-level IMAP client for checking exact server responses.
type raw struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, conn: c, r: bufio.NewReader(c)}
	if l := r.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	return r
}

func (r *raw) line() string {
	r.t.Helper()
	l, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns the untagged lines and the tagged status line.
func (r *raw) cmd(format string, args ...any) ([]string, string) {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("a%d", r.n)
	fmt.Fprintf(r.conn, tag+" "+format+"\r\n", args...)
	var lines []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return lines, strings.TrimPrefix(l, tag+" ")
		}
		lines = append(lines, l)
	}
}

func (r *raw) ok(format string, args ...any) []string {
	r.t.Helper()
	lines, status := r.cmd(format, args...)
	if !strings.HasPrefix(status, "OK") {
		r.t.Fatalf("%s: %s (%q)", fmt.Sprintf(format, args...), status, lines)
	}
	return lines
}

func (r *raw) starttls() {
	r.t.Helper()
	r.ok("STARTTLS")
	tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn = tc
	r.r = bufio.NewReader(tc)
}
