package managesieve

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"net"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/store"
)

// sievecChecker validates scripts with Pigeonhole's compiler, sievec (Debian
// dovecot-sieve): the reference implementation decides what is valid in these tests.
type sievecChecker struct{ bin, dir string }

func newSievec(tb testing.TB) *sievecChecker {
	return &sievecChecker{bin: testenv.Program(tb, "sievec"), dir: tb.TempDir()}
}

func (c *sievecChecker) Check(script []byte) (string, error) {
	f, err := os.CreateTemp(c.dir, "*.sieve")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	f.Write(script)
	f.Close()
	out := f.Name() + ".svbin"
	defer os.Remove(out)
	b, err := exec.Command(c.bin, "-c", "/dev/null", f.Name(), out).CombinedOutput()
	var errs, warns []string
	for _, l := range strings.Split(string(b), "\n") {
		// "NAME: line 3: error: ..." → "line 3: error: ..."
		if _, rest, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(rest, "line ") {
			if strings.Contains(rest, ": warning: ") {
				warns = append(warns, rest)
			} else {
				errs = append(errs, rest)
			}
		}
	}
	if err != nil {
		if len(errs) == 0 {
			errs = append(errs, strings.TrimSpace(string(b)))
		}
		return "", fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return strings.Join(warns, "\n"), nil
}

func (c *sievecChecker) Extensions() []string {
	return strings.Fields("fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body environment mailbox date index ihave duplicate")
}

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
	srv, err := New(cfg, Deps{Store: st, Auth: mailboxtest.Users, Checker: newSievec(tb)})
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
