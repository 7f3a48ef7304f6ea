package managesieve

import (
	"bufio"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"net"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/sieve"
	"github.com/portcullis-mail/portcullis/store"
)

// compiler is the Checker portcullis serve passes (delivery/local.Checker): the sieve
// package's compiler, so PUTSCRIPT accepts what delivery runs.
type compiler struct{}

func (compiler) Check(script []byte) (string, error) {
	s, err := sieve.Compile(script, sieve.Options{})
	if err != nil {
		return "", err
	}
	var w []string
	for _, e := range s.Warnings() {
		w = append(w, e.Error())
	}
	return strings.Join(w, "\n"), nil
}

func (compiler) Extensions() []string { return sieve.Supported() }

type rig struct {
	srv   *Server
	st    *store.Store
	addr  string
	cert  string // PEM of the server's certificate
	tlsMu *tls.Config
}

// startServer runs a server with STARTTLS on loopback with mailboxtest's users.
func startServer(tb testing.TB, cfg Config) *rig {
	tb.Helper()
	tlsCfg, certFile := mailboxtest.Cert(tb)
	cfg.TLSConfig = tlsCfg
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = 4
	}
	st := mailboxtest.Store(tb, store.Config{})
	srv, err := New(cfg, Deps{Store: st, Auth: mailboxtest.Users, Checker: compiler{}})
	if err != nil {
		tb.Fatal(err)
	}
	addr := mailboxtest.Serve(tb, srv)
	return &rig{srv: srv, st: st, addr: addr, cert: certFile, tlsMu: tlsCfg}
}

// client is a raw ManageSieve connection.
type client struct {
	tb   testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(tb testing.TB, addr string) (*client, []string) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cl := &client{tb: tb, conn: c, r: bufio.NewReader(c)}
	return cl, cl.response()
}

// response reads lines up to and including the one starting with OK, NO or BYE.
func (c *client) response() []string {
	c.tb.Helper()
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.tb.Fatalf("reading a response after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
			return lines
		}
	}
}

func (c *client) cmd(line string) []string {
	c.tb.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.tb.Fatal(err)
	}
	return c.response()
}

// last returns a response's status line.
func last(lines []string) string { return lines[len(lines)-1] }

func (c *client) starttls() {
	c.tb.Helper()
	if l := last(c.cmd("STARTTLS")); !strings.HasPrefix(l, "OK") {
		c.tb.Fatalf("STARTTLS: %s", l)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.tb.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	if caps := c.response(); !strings.HasPrefix(last(caps), "OK") {
		c.tb.Fatalf("capabilities after STARTTLS: %q", caps)
	}
}

func (c *client) login(user, pass string) {
	c.tb.Helper()
	c.starttls()
	resp := plain(user, pass)
	if l := last(c.cmd(`AUTHENTICATE "PLAIN" "` + resp + `"`)); l != "OK" {
		c.tb.Fatalf("AUTHENTICATE: %s", l)
	}
}

func writeFile(tb testing.TB, dir, name, text string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
