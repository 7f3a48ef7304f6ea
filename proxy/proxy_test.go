package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/imapd"
	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/proxylisten"
	"github.com/portcullis-mail/portcullis/managesieve"
	"github.com/portcullis-mail/portcullis/pop3d"
	"github.com/portcullis-mail/portcullis/proxy"
	"github.com/portcullis-mail/portcullis/store"
)

// dirMap is a directory held in a map, with the failures the real ones have (an outage,
// a user being moved) settable per user: the PostgreSQL and LDAP directories are
// exercised in package directory and in cmd/portcullis's e2e test.
type dirMap map[string]directory.User

var errDirectoryDown = errors.New("directory down")

func (d dirMap) Lookup(_ context.Context, addr string) (directory.User, error) {
	u, ok := d[addr]
	if !ok {
		return directory.User{}, directory.ErrNotFound
	}
	if u.MailHost == "down" {
		return directory.User{}, errDirectoryDown
	}
	return u, nil
}

type env struct {
	backendIMAP        string // b1's IMAP listener (PROXY header required from 127.0.0.1)
	plainIMAP          string // the same imapd on a plaintext listener: back-end "plain"
	backendPOP3        string // b1's POP3 listener (implicit TLS, PROXY header from 127.0.0.1)
	plainPOP3          string // the same pop3d on a plaintext listener
	plainSieve         string // the managesieve server's plaintext listener (STARTTLS)
	sieveAddr          string // the proxy's ManageSieve listener
	st                 *store.Store
	imapAddr, pop3Addr string // the proxy's: STARTTLS, and implicit TLS
	px                 *proxy.Server
}

// start runs a real imapd and pop3d over one store, behind PROXY-protocol listeners, and
// the proxy in front of them with users in dir.
func start(t testing.TB, cfg proxy.Config, dir dirMap) *env {
	return startWith(t, cfg, dir, mailboxtest.Users)
}

// backendAuth is what the back-ends check logins with.
type backendAuth interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// startWith is start with the back-ends' authenticator.
func startWith(t testing.TB, cfg proxy.Config, dir dirMap, bauth backendAuth) *env {
	t.Helper()
	st := mailboxtest.Store(t, store.Config{})
	tc, _ := mailboxtest.Cert(t)
	log := slog.New(slog.DiscardHandler)
	isrv, err := imapd.New(imapd.Config{TLSConfig: tc}, st, bauth, log)
	if err != nil {
		t.Fatal(err)
	}
	psrv, err := pop3d.New(pop3d.Config{TLSConfig: tc}, st, bauth, log)
	if err != nil {
		t.Fatal(err)
	}
	msrv, err := managesieve.New(managesieve.Config{TLSConfig: tc}, managesieve.Deps{Store: st, Auth: bauth, Checker: compiler{}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { isrv.Close(); psrv.Close(); msrv.Close() })
	listen := func(serve func(net.Listener) error, implicitTLS bool) string {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pl, err := proxylisten.Wrap(raw, []string{"127.0.0.1/32"})
		if err != nil {
			t.Fatal(err)
		}
		var ln net.Listener = pl
		if implicitTLS {
			ln = tls.NewListener(pl, tc)
		}
		go serve(ln)
		return raw.Addr().String()
	}
	backend := func(serve func(net.Listener) error) string { return listen(serve, true) }
	if cfg.Backends == nil {
		cfg.Backends = map[string]proxy.Backend{}
	}
	cfg.Backends["b1"] = proxy.Backend{IMAP: backend(isrv.Serve), POP3: backend(psrv.Serve), TLS: true, InsecureSkipVerify: true}
	cfg.Backends["plain"] = proxy.Backend{IMAP: listen(isrv.Serve, false), POP3: listen(psrv.Serve, false), ManageSieve: listen(msrv.Serve, false)}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	cfg.Backends["gone"] = proxy.Backend{IMAP: closed.Addr().String(), POP3: closed.Addr().String()}
	cfg.TLSConfig = tc
	// This process's own servers, for proxy_maybe.
	local := proxy.Local{IMAP: proxy.NewPipeListener(), POP3: proxy.NewPipeListener(), ManageSieve: proxy.NewPipeListener()}
	for _, l := range []struct {
		pl    *proxy.PipeListener
		serve func(net.Listener) error
	}{{local.IMAP, isrv.Serve}, {local.POP3, psrv.Serve}, {local.ManageSieve, msrv.Serve}} {
		wl, err := proxylisten.Wrap(l.pl, nil)
		if err != nil {
			t.Fatal(err)
		}
		go l.serve(wl)
	}
	px, err := proxy.New(cfg, proxy.Deps{Auth: mailboxtest.Users, Directory: dir, Logger: log, Local: local})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	e := &env{st: st, px: px, backendIMAP: cfg.Backends["b1"].IMAP, plainIMAP: cfg.Backends["plain"].IMAP,
		backendPOP3: cfg.Backends["b1"].POP3, plainPOP3: cfg.Backends["plain"].POP3, plainSieve: cfg.Backends["plain"].ManageSieve}
	ln1, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	ln3, _ := net.Listen("tcp", "127.0.0.1:0")
	go px.ServeIMAP(ln1, false)
	go px.ServePOP3(ln2, true)
	go px.ServeManageSieve(ln3)
	e.imapAddr, e.pop3Addr, e.sieveAddr = ln1.Addr().String(), ln2.Addr().String(), ln3.Addr().String()
	return e
}

var users = dirMap{
	"alice@example.org": {Address: "alice@example.org", MailHost: "b1"},
	"bob@example.org":   {Address: "bob@example.org", MailHost: "gone"},
}

// client is a line-level client over the proxy, from 127.0.0.2.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialIMAP(t *testing.T, e *env) *client {
	t.Helper()
	c, r, greeting := mailboxtest.DialFrom(t, e.imapAddr, "127.0.0.2")
	if !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("greeting %q", greeting)
	}
	cl := &client{t: t, c: c, r: r}
	cl.send("s STARTTLS")
	cl.expect("s OK")
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	cl.c, cl.r = tc, bufio.NewReader(tc)
	return cl
}

func dialPOP3(t *testing.T, e *env) *client {
	t.Helper()
	c, r, greeting := mailboxtest.DialTLS(t, e.pop3Addr)
	if !strings.HasPrefix(greeting, "+OK") {
		t.Fatalf("greeting %q", greeting)
	}
	return &client{t: t, c: c, r: r}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.c, "%s\r\n", line); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads lines until one starts with prefix, failing on an answer with the same
// tag (or the other POP3 status) that does not.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", prefix, err)
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, prefix) {
			return l
		}
		tag, _, _ := strings.Cut(prefix, " ")
		if strings.HasPrefix(l, tag+" ") || strings.HasPrefix(prefix, "+OK") && strings.HasPrefix(l, "-ERR") || strings.HasPrefix(prefix, "-ERR") && strings.HasPrefix(l, "+OK") {
			c.t.Fatalf("got %q, want %q", l, prefix)
		}
	}
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestIMAP(t *testing.T) {
	e := start(t, proxy.Config{}, users)
	mailboxtest.Deliver(t, e.st, "alice@example.org", "Subject: hello alice\r\n\r\nhi\r\n")

	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org {9}")
	c.expect("+ ")
	c.send("secret pw")
	c.expect("a OK")
	c.send("b SELECT INBOX")
	c.expect("b OK")
	c.send("c FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
	if l := c.expect("Subject:"); l != "Subject: hello alice" {
		t.Fatalf("fetched %q", l)
	}
	c.expect("c OK")
	c.send("d LOGOUT")
	c.expect("d OK")

	// SASL-IR, pipelined with the next command: the bytes after the login reach the
	// back-end.
	c = dialIMAP(t, e)
	c.send("a AUTHENTICATE PLAIN " + plain("alice@example.org", "secret pw") + "\r\nb STATUS INBOX (MESSAGES)")
	c.expect("a OK")
	if l := c.expect("* STATUS"); !strings.Contains(l, "MESSAGES 1") {
		t.Fatalf("status %q", l)
	}
	c.expect("b OK")
}

func TestPOP3(t *testing.T) {
	e := start(t, proxy.Config{}, users)
	mailboxtest.Deliver(t, e.st, "alice@example.org", "Subject: pop\r\n\r\nhi\r\n")
	c := dialPOP3(t, e)
	c.send("CAPA")
	c.expect("+OK")
	c.expect("SASL PLAIN")
	c.send("AUTH PLAIN")
	c.expect("+ ")
	c.send(plain("alice@example.org", "secret pw"))
	c.expect("+OK")
	c.send("STAT")
	c.expect("+OK 1 ")
	c.send("QUIT")
	c.expect("+OK")

	// USER/PASS and STAT pipelined in one write.
	c = dialPOP3(t, e)
	c.send("USER alice@example.org\r\nPASS secret pw\r\nSTAT")
	c.expect("+OK")
	c.expect("+OK")
	c.expect("+OK 1 ")
}

// TestUnavailable: every failure to reach the user's mailbox is a temporary error.
func TestUnavailable(t *testing.T) {
	dir := dirMap{
		"alice@example.org": {Address: "alice@example.org", MailHost: "down"}, // directory outage
		"bob@example.org":   {Address: "bob@example.org", MailHost: "gone"},   // back-end down
	}
	for _, tc := range []struct {
		name string
		u    directory.User
	}{
		{"directory-down", directory.User{MailHost: "down"}},
		{"backend-down", directory.User{MailHost: "gone"}},
		{"moving", directory.User{MailHost: "b1", State: directory.StateMoving}},
		{"unknown-host", directory.User{MailHost: "nowhere"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.u.Address = "alice@example.org"
			dir["alice@example.org"] = tc.u
			e := start(t, proxy.Config{}, dir)
			c := dialIMAP(t, e)
			c.send("a LOGIN alice@example.org \"secret pw\"")
			c.expect("a NO [UNAVAILABLE]")
			p := dialPOP3(t, e)
			p.send("USER alice@example.org")
			p.expect("+OK")
			p.send("PASS secret pw")
			p.expect("-ERR [SYS/TEMP]")
		})
	}
	t.Run("not-in-directory", func(t *testing.T) {
		e := start(t, proxy.Config{}, dirMap{})
		c := dialIMAP(t, e)
		c.send("a LOGIN alice@example.org \"secret pw\"")
		c.expect("a NO [UNAVAILABLE]")
	})
}

func TestRefusals(t *testing.T) {
	e := start(t, proxy.Config{MaxLoginAttempts: 2}, users)
	// No password before TLS.
	c, r, _ := mailboxtest.DialFrom(t, e.imapAddr, "127.0.0.2")
	plainC := &client{t: t, c: c, r: r}
	plainC.send("a LOGIN alice@example.org \"secret pw\"")
	plainC.expect("a NO [PRIVACYREQUIRED]")
	plainC.send("b AUTHENTICATE PLAIN " + plain("alice@example.org", "secret pw"))
	plainC.expect("b NO [PRIVACYREQUIRED]")
	// Bytes after STARTTLS, before the handshake, end the connection (RFC 3207 §4.2).
	plainC.send("c STARTTLS\r\nd LOGIN alice@example.org x")
	plainC.expect("c OK")
	if !mailboxtest.ClosedWithin(c, r, 10*time.Second) {
		t.Fatal("a command injected before the TLS handshake was not refused")
	}

	// Wrong passwords: refused, and the connection closed after MaxLoginAttempts.
	s := dialIMAP(t, e)
	s.send("a LOGIN alice@example.org wrong")
	s.expect("a NO [AUTHENTICATIONFAILED]")
	s.send("b AUTHENTICATE PLAIN " + plain("alice@example.org", "wrong"))
	s.expect("b NO [AUTHENTICATIONFAILED]")
	s.expect("* BYE")
	// An authorization identity that is not the user is refused.
	s = dialIMAP(t, e)
	s.send("a AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("bob@example.org\x00alice@example.org\x00secret pw")))
	s.expect("a BAD")
	s.send("b SELECT INBOX")
	s.expect("b BAD")

	p := dialPOP3(t, e)
	p.send("PASS secret pw")
	p.expect("-ERR")
	p.send("USER alice@example.org")
	p.expect("+OK")
	p.send("PASS wrong")
	p.expect("-ERR [AUTH]")
}

func TestPOP3PlainRefused(t *testing.T) {
	e := start(t, proxy.Config{}, users)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go e.px.ServePOP3(ln, false)
	c, r, greeting := mailboxtest.DialFrom(t, ln.Addr().String(), "127.0.0.2")
	if !strings.HasPrefix(greeting, "+OK") {
		t.Fatal(greeting)
	}
	p := &client{t: t, c: c, r: r}
	p.send("USER alice@example.org")
	p.expect("-ERR [AUTH]")
	p.send("AUTH PLAIN " + plain("alice@example.org", "secret pw"))
	p.expect("-ERR [AUTH]")
	p.send("STLS")
	p.expect("+OK")
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	p.c, p.r = tc, bufio.NewReader(tc)
	p.send("USER alice@example.org")
	p.expect("+OK")
	p.send("PASS secret pw")
	p.expect("+OK")
}

// TestIdle: a session in which nobody says anything is closed after IdleTimeout.
func TestIdle(t *testing.T) {
	e := start(t, proxy.Config{IdleTimeout: 300 * time.Millisecond}, users)
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a OK")
	if !mailboxtest.ClosedWithin(c.c, c.r, 15*time.Second) {
		t.Fatal("an idle session stayed open")
	}
}

func TestConnectionLimit(t *testing.T) {
	e := start(t, proxy.Config{MaxConnectionsPerIP: 1}, users)
	dialIMAP(t, e)
	_, _, greeting := mailboxtest.DialFrom(t, e.imapAddr, "127.0.0.2")
	if !strings.HasPrefix(greeting, "* BYE [UNAVAILABLE]") {
		t.Fatalf("second connection from one address: %q", greeting)
	}
}

func TestNewChecks(t *testing.T) {
	tc, _ := mailboxtest.Cert(t)
	deps := proxy.Deps{Auth: mailboxtest.Users, Directory: users}
	for name, cfg := range map[string]proxy.Config{
		"no tls":          {Backends: map[string]proxy.Backend{"a": {IMAP: "127.0.0.1:1"}}},
		"no backends":     {TLSConfig: tc},
		"bad address":     {TLSConfig: tc, Backends: map[string]proxy.Backend{"a": {IMAP: "nope"}}},
		"no address":      {TLSConfig: tc, Backends: map[string]proxy.Backend{"a": {}}},
		"bad default":     {TLSConfig: tc, Backends: map[string]proxy.Backend{"a": {IMAP: "127.0.0.1:1"}}, DefaultHost: "b"},
		"missing ca file": {TLSConfig: tc, Backends: map[string]proxy.Backend{"a": {IMAP: "127.0.0.1:1", TLS: true, CAFile: "/nonexistent"}}},
	} {
		if _, err := proxy.New(cfg, deps); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestIMAPLargestID: RFC 2971 §3.3 allows 30 field-value pairs of up to 30 and 1024
// octets before login (imaptest's "id" script sends them): the proxy answers it as a
// back-end does, instead of closing the connection as a command too long.
func TestIMAPLargestID(t *testing.T) {
	e := start(t, proxy.Config{}, users)
	c := dialIMAP(t, e)
	var b strings.Builder
	b.WriteString("a ID (")
	for i := range 30 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "\"%-30s\" \"%s\"", fmt.Sprintf("f%d", i), strings.Repeat("v", 1024))
	}
	b.WriteString(")")
	c.send(b.String())
	c.expect("a OK")
	c.send("b LOGIN alice@example.org \"secret pw\"")
	c.expect("b OK")
}
