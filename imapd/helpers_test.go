package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/store"
)

// staticAuth is a test Authenticator with fixed passwords (the real one lives in auth/).
type staticAuth map[string]string

func (a staticAuth) Authenticate(_ context.Context, user, pass string, _ netip.Addr) (string, error) {
	if p, ok := a[user]; ok && p == pass {
		return user, nil
	}
	return "", auth.ErrInvalid
}

// testCert makes the server's own self-signed certificate (localhost, 127.0.0.1) in a
// temp dir and returns the TLS config and the PEM paths (for clients that verify it).
func testCert(t *testing.T) (*tls.Config, string, string) {
	t.Helper()
	dir := t.TempDir()
	cert, err := smtpd.SelfSignedCertificate(dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		filepath.Join(dir, "tls", "selfsigned.crt"), filepath.Join(dir, "tls", "selfsigned.key")
}

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
	scfg.Dir = t.TempDir()
	st, err := store.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tc, cp, _ := testCert(t)
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = tc
	}
	srv, err := New(cfg, st, staticAuth{"alice@example.org": "secret pw", "bob@example.org": "pw2"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &env{store: st, srv: srv, addr: ln.Addr().String(), tls: tc, cert: cp}
}

func (e *env) deliver(t *testing.T, user, msg string) uint32 {
	t.Helper()
	uid, err := e.store.Deliver(context.Background(), user, "", strings.NewReader(msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	return uid
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
