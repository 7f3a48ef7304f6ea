package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/proxylisten"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/proxy"
)

// dialBackend connects to a back-end listener from 127.0.0.1 (a trusted proxy address)
// with header, or from 127.0.0.2 (a direct client) when header is nil.
func dialBackend(t *testing.T, addr string, header *proxyproto.Header) *client {
	t.Helper()
	if header == nil {
		c, r, greeting := mailboxtest.DialFrom(t, addr, "127.0.0.2")
		if !strings.HasPrefix(greeting, "* OK") {
			t.Fatalf("greeting %q", greeting)
		}
		return &client{t: t, c: c, r: r}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := header.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	cl.expect("* OK")
	return cl
}

// dialRaw connects to a back-end listener like dialBackend, reading no greeting (for
// POP3 and ManageSieve).
func dialRaw(t *testing.T, addr string, header *proxyproto.Header) *client {
	t.Helper()
	d := net.Dialer{}
	if header == nil {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if header != nil {
		if _, err := header.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func clientHeader(tlsTLV bool) *proxyproto.Header {
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.9:5000")),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:993")))
	if tlsTLV {
		h.SetTLVs([]proxyproto.TLV{proxylisten.SSLTLV()})
	}
	return h
}

// TestPlaintextLink: the proxy reaches a back-end without TLS; the back-end takes the
// login because the PROXY header from its trusted proxy says the client came over TLS,
// and only then.
func TestPlaintextLink(t *testing.T) {
	dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "plain"}}
	e := start(t, proxy.Config{}, dir)
	mailboxtest.Deliver(t, e.st, "alice@example.org", "Subject: plain link\r\n\r\nhi\r\n")
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a OK")
	c.send("b SELECT INBOX")
	c.expect("* 1 EXISTS")
	c.expect("b OK")
	// A large response, relayed in pieces (pooled buffers, read on while incomplete,
	// TLS records gathered), arrives byte for byte, and the session goes on after it.
	var big strings.Builder
	big.WriteString("Subject: big\r\n\r\n")
	for i := 0; big.Len() < 300<<10; i++ {
		fmt.Fprintf(&big, "line %d %s\r\n", i, strings.Repeat("x", i%97))
	}
	mailboxtest.Deliver(t, e.st, "alice@example.org", big.String())
	c.send("x NOOP")
	c.expect("x OK")
	for range 3 {
		c.send("f FETCH 2 BODY.PEEK[]")
		l := c.expect("* 2 FETCH")
		n, err := strconv.Atoi(l[strings.LastIndexByte(l, '{')+1 : len(l)-1])
		if err != nil {
			t.Fatalf("%q", l)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.r, body); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(big.String(), string(body)) || n < big.Len()-100 {
			t.Fatalf("FETCH of %d bytes gave %d different ones", big.Len(), n)
		}
		c.expect("f OK")
	}
	c.send("n NOOP")
	c.expect("n OK")
	p := dialPOP3(t, e)
	p.send("USER alice@example.org")
	p.expect("+OK")
	p.send("PASS secret pw")
	p.expect("+OK")
	p.send("STAT")
	p.expect("+OK 2 ")

	// Directly, without TLS: no password. Through the proxy's address without the TLS
	// flag: no password either (HAProxy in front of a plaintext client).
	for name, h := range map[string]*proxyproto.Header{"direct": nil, "proxied-plaintext": clientHeader(false)} {
		d := dialBackend(t, e.plainIMAP, h)
		d.send("a LOGIN alice@example.org \"secret pw\"")
		if l := d.expect("a NO"); !strings.Contains(l, "PRIVACYREQUIRED") {
			t.Errorf("%s: %q", name, l)
		}
	}
	d := dialBackend(t, e.plainIMAP, clientHeader(true))
	d.send("a LOGIN alice@example.org \"secret pw\"")
	d.expect("a OK")
}

// rejectAll is a back-end's own user database that knows no password: with a master
// login, the back-end needs none.
type rejectAll struct{}

var errNoPasswords = errors.New("no passwords here")

func (rejectAll) Authenticate(context.Context, string, string, netip.Addr) (string, error) {
	return "", errNoPasswords
}

func masterSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMasterLogin: the proxy authenticates the user and logs in to the back-end with its
// master credential; the back-end, which knows no password, takes it only from its
// trusted proxy, with the right secret, for a user of the directory.
func TestMasterLogin(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-master"
	file := masterSecret(t, secret)
	dir := dirMap{
		"alice@example.org": {Address: "alice@example.org", MailHost: "b1"},
		"bob@example.org":   {Address: "bob@example.org", MailHost: "plain"},
	}
	ma, err := proxy.NewMasterAuth(rejectAll{}, dir, "proxy", file)
	if err != nil {
		t.Fatal(err)
	}
	e := startWith(t, proxy.Config{MasterUser: "proxy", MasterSecretFile: file}, dir, ma)
	mailboxtest.Deliver(t, e.st, "alice@example.org", "Subject: one\r\n\r\nhi\r\n")
	for _, u := range []struct{ user, pass string }{{"alice@example.org", "secret pw"}, {"bob@example.org", "pw2"}} {
		c := dialIMAP(t, e)
		c.send("a LOGIN " + u.user + " \"" + u.pass + "\"")
		c.expect("a OK")
		c.send("b STATUS INBOX (MESSAGES)")
		c.expect("* STATUS")
		c.expect("b OK")
		p := dialPOP3(t, e)
		p.send("AUTH PLAIN " + plain(u.user, u.pass))
		p.expect("+OK")
		p.send("STAT")
		p.expect("+OK")
		p.send("QUIT") // the maildrop's lock, for the POP3 login below
		p.expect("+OK")
	}
	// The proxy still checks the user's password itself.
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org wrong")
	c.expect("a NO [AUTHENTICATIONFAILED]")

	masterPlain := func(user, master, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte(user + "\x00" + master + "\x00" + pass))
	}
	// At the back-end: the master login is taken from the proxy's address only, with the
	// right name and secret, for a user of the directory.
	for _, tc := range []struct {
		name   string
		header *proxyproto.Header
		resp   string
		want   string
	}{
		{"from the proxy", clientHeader(true), masterPlain("alice@example.org", "proxy", secret), "a OK"},
		{"direct client", nil, masterPlain("alice@example.org", "proxy", secret), "a NO"},
		{"wrong secret", clientHeader(true), masterPlain("alice@example.org", "proxy", secret+"x"), "a NO"},
		{"wrong master", clientHeader(true), masterPlain("alice@example.org", "other", secret), "a NO"},
		{"unknown user", clientHeader(true), masterPlain("carol@example.org", "proxy", secret), "a NO"},
	} {
		var d *client
		if tc.header == nil {
			dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			raw, err := dl.Dial("tcp", e.backendIMAP) // b1 is imaps
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { raw.Close() })
			raw.SetDeadline(time.Now().Add(20 * time.Second))
			tl := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
			d = &client{t: t, c: tl, r: bufio.NewReader(tl)}
			d.expect("* OK")
		} else {
			d = dialBackend(t, e.plainIMAP, tc.header)
		}
		d.send("a AUTHENTICATE PLAIN " + tc.resp)
		if l := d.expect("a "); !strings.HasPrefix(l, tc.want) {
			t.Errorf("%s: %q, want %s", tc.name, l, tc.want)
		}
	}
	// POP3 and ManageSieve, the same: from the proxy (plaintext link, PROXY header saying
	// TLS) the master login is taken; from a direct client, over TLS, it is refused.
	sasl := masterPlain("alice@example.org", "proxy", secret)
	for _, direct := range []bool{false, true} {
		var p *client
		if direct {
			p = dialRaw(t, e.backendPOP3, nil) // b1 is pop3s
			tl := tls.Client(p.c, &tls.Config{InsecureSkipVerify: true})
			p.c, p.r = tl, bufio.NewReader(tl)
			p.expect("+OK")
		} else {
			p = dialRaw(t, e.plainPOP3, clientHeader(true))
			p.expect("+OK")
		}
		p.send("AUTH PLAIN " + sasl)
		if l := p.expect(""); strings.HasPrefix(l, "+OK") == direct {
			t.Errorf("POP3 master login, direct %v: %q", direct, l)
		}
		p.send("QUIT")
		p.expect("+OK")

		var m *client
		if direct {
			m = dialRaw(t, e.plainSieve, nil)
			m.expect("OK")
			m.send("STARTTLS")
			m.expect("OK")
			tl := tls.Client(m.c, &tls.Config{InsecureSkipVerify: true})
			m.c, m.r = tl, bufio.NewReader(tl)
			m.expect("OK")
		} else {
			m = dialRaw(t, e.plainSieve, clientHeader(true))
			m.expect("OK")
		}
		m.send(`AUTHENTICATE "PLAIN" "` + sasl + `"`)
		if l := m.expect(""); strings.HasPrefix(l, "OK") == direct {
			t.Errorf("ManageSieve master login, direct %v: %q", direct, l)
		}
	}
	if _, err := proxy.NewMasterAuth(rejectAll{}, dir, "proxy", masterSecret(t, "short")); err == nil {
		t.Error("a short master secret was accepted")
	}
}

// TestHealth: a back-end that accepts connections but never answers (a hung machine) is
// found down by the health check, its users get the temporary error without waiting for
// ConnectTimeout, and it is used again once it answers.
func TestHealth(t *testing.T) {
	// A reserved port below the ephemeral range: the test listens on it again later,
	// and no other process's connection may take it meanwhile.
	addr := testenv.FreeAddr(t)
	hung, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "sick"}}
	// ConnectTimeout is far beyond the client's deadline (20 s): an answer proves the
	// proxy did not try the back-end.
	e := start(t, proxy.Config{HealthInterval: 50 * time.Millisecond, ConnectTimeout: 10 * time.Minute,
		Backends: map[string]proxy.Backend{"sick": {IMAP: addr}}}, dir)
	waitFor(t, func() bool { return slices.Contains(e.px.Down(), addr) })
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a NO [UNAVAILABLE]")

	// The back-end comes back on the same address: the real imapd behind the plaintext
	// PROXY listener.
	hung.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen on %s again: %v", addr, err)
	}
	forward(t, ln, e.plainIMAP)
	waitFor(t, func() bool { return !slices.Contains(e.px.Down(), addr) })
	c = dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a OK")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30 s")
		}
	}
}

// forward relays ln's connections to addr byte for byte (PROXY headers included).
func forward(t *testing.T, ln net.Listener, addr string) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, c)
				io.Copy(c, b)
			}()
		}
	}()
}

// TestProxyMaybe: with proxy_maybe, a user whose mail host is this node is served by
// this process's own servers (in memory); the others are proxied as before.
func TestProxyMaybe(t *testing.T) {
	dir := dirMap{
		"alice@example.org": {Address: "alice@example.org", MailHost: "self"},
		"bob@example.org":   {Address: "bob@example.org", MailHost: "plain"},
	}
	// Without proxy_maybe, "self" is no back-end: the temporary error.
	e := start(t, proxy.Config{}, dir)
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a NO [UNAVAILABLE]")

	e = start(t, proxy.Config{ProxyMaybe: true, LocalHost: "self"}, dir)
	mailboxtest.Deliver(t, e.st, "alice@example.org", "Subject: here\r\n\r\nhi\r\n")
	c = dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a OK")
	c.send("s SELECT INBOX")
	c.expect("s OK")
	c.send("b FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
	if l := c.expect("Subject:"); l != "Subject: here" {
		t.Fatalf("fetched %q", l)
	}
	c.expect("b OK")
	c.send("c LOGOUT")
	c.expect("c OK")
	p := dialPOP3(t, e)
	p.send("AUTH PLAIN " + plain("alice@example.org", "secret pw"))
	p.expect("+OK")
	p.send("STAT")
	p.expect("+OK 1 ")
	c = dialIMAP(t, e)
	c.send("a LOGIN bob@example.org pw2")
	c.expect("a OK")

	if _, err := proxy.New(proxy.Config{ProxyMaybe: true, TLSConfig: &tls.Config{}}, proxy.Deps{Auth: mailboxtest.Users, Directory: dir}); err == nil {
		t.Error("proxy_maybe without local_host accepted")
	}
}

// TestNoHealthChecks: with health checks off (a negative interval) nothing would bring
// a back-end back once a session failed to reach it; a failure must not mark it down,
// and its users are served as soon as it answers again.
func TestNoHealthChecks(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens yet; reserved for the test's own listen below
	dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "flaky"}}
	e := start(t, proxy.Config{HealthInterval: -1, Backends: map[string]proxy.Backend{"flaky": {IMAP: addr}}}, dir)
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a NO [UNAVAILABLE]")

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen on %s again: %v", addr, err)
	}
	forward(t, ln, e.plainIMAP)
	if d := e.px.Down(); len(d) != 0 {
		t.Errorf("down without health checks: %v", d)
	}
	c = dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a OK")
}

// TestPipelinedLogin: a back-end whose greeting offered SASL-IR gets the next session's
// AUTHENTICATE with its initial response before its greeting; when it no longer offers
// SASL-IR (a back-end replaced by another server) and answers that command BAD, the
// login is made again without the initial response and the session goes on. The
// back-end is scripted, since no real server changes its capabilities between two
// connections.
func TestPipelinedLogin(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := proxylisten.Wrap(raw, []string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		before string // what came before the greeting was sent
		lines  []string
	}
	sessions := make(chan seen, 4)
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(i int) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(c)
				var s seen
				// What came with the PROXY header, before the greeting.
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if _, err := r.Peek(1); err == nil {
					b, _ := r.Peek(r.Buffered())
					s.before = string(b)
				}
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				caps := "IMAP4rev1 AUTH=PLAIN"
				if i == 0 {
					caps += " SASL-IR"
				}
				io.WriteString(c, "* OK ["+caps+"] scripted\r\n")
				cont := "" // the tag whose continuation request was sent
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						sessions <- s
						return
					}
					l = strings.TrimRight(l, "\r\n")
					s.lines = append(s.lines, l)
					if cont != "" { // the PLAIN response
						io.WriteString(c, cont+" OK [CAPABILITY IMAP4rev1] in\r\n")
						cont = ""
						continue
					}
					tag, rest, _ := strings.Cut(l, " ")
					switch {
					case rest == "AUTHENTICATE PLAIN":
						cont = tag
						io.WriteString(c, "+ \r\n")
					case strings.HasPrefix(rest, "AUTHENTICATE PLAIN ") && i == 0:
						io.WriteString(c, tag+" OK [CAPABILITY IMAP4rev1] in\r\n")
					case rest == "NOOP":
						io.WriteString(c, tag+" OK done\r\n")
					default: // the initial response of the second session among them
						io.WriteString(c, tag+" BAD what\r\n")
					}
				}
			}(i)
		}
	}()
	dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "scripted"}}
	e := start(t, proxy.Config{HealthInterval: -1, Backends: map[string]proxy.Backend{"scripted": {IMAP: raw.Addr().String()}}}, dir)
	for i := range 2 {
		c := dialIMAP(t, e)
		c.send("a LOGIN alice@example.org \"secret pw\"")
		c.expect("a OK")
		c.send("n NOOP")
		c.expect("n OK done")
		c.c.Close()
		s := <-sessions
		pipelined := strings.HasPrefix(s.before, "P1 AUTHENTICATE PLAIN ")
		if pipelined != (i == 1) {
			t.Errorf("session %d: before the greeting %q", i, s.before)
		}
		if i == 1 && (len(s.lines) < 3 || s.lines[1] != "P2 AUTHENTICATE PLAIN") {
			t.Errorf("session %d: no login without the initial response: %q", i, s.lines)
		}
	}
}

// TestRelayPartialStall: what a back-end has sent reaches the client at once even when
// the response is incomplete and the back-end then stalls: a literal announced and
// partly sent, an untagged response without its tagged one, IDLE's continuation
// request. The relay reads on after an incomplete chunk only what has already come
// (readMore never waits); a relay that waited for the rest would hold these seconds.
func TestRelayPartialStall(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := proxylisten.Wrap(raw, []string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] scripted\r\n")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					tag, rest, _ := strings.Cut(strings.TrimRight(l, "\r\n"), " ")
					switch {
					case strings.HasPrefix(rest, "AUTHENTICATE PLAIN "):
						io.WriteString(c, tag+" OK [CAPABILITY IMAP4rev1] in\r\n")
					case rest == "FETCH 1 BODY[]":
						io.WriteString(c, "* 1 FETCH (BODY[] {10}\r\nhel")
						time.Sleep(3 * time.Second)
						io.WriteString(c, "lo12345)\r\n"+tag+" OK done\r\n")
					case rest == "NOOP":
						io.WriteString(c, "* 3 EXISTS\r\n")
						time.Sleep(3 * time.Second)
						io.WriteString(c, tag+" OK done\r\n")
					case rest == "IDLE":
						io.WriteString(c, "+ idling\r\n")
					}
				}
			}()
		}
	}()
	dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "scripted"}}
	e := start(t, proxy.Config{HealthInterval: -1, Backends: map[string]proxy.Backend{"scripted": {IMAP: raw.Addr().String()}}}, dir)
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a OK")
	for _, step := range []struct{ cmd, want string }{
		{"f FETCH 1 BODY[]", "* 1 FETCH (BODY[] {10}"},
		{"n NOOP", "* 3 EXISTS"},
		{"i IDLE", "+ idling"},
	} {
		// After the back-end's stall the rest comes; the first part must come well before.
		c.send(step.cmd)
		start := time.Now()
		if l := c.expect(step.want); time.Since(start) > 2*time.Second {
			t.Errorf("%s: %q after %v: held back until the back-end's rest came", step.cmd, l, time.Since(start))
		}
		if step.cmd == "f FETCH 1 BODY[]" {
			buf := make([]byte, 3)
			c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadFull(c.r, buf); err != nil || string(buf) != "hel" {
				t.Errorf("the literal's first bytes: %q, %v", buf, err)
			}
			c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		}
		if step.cmd != "i IDLE" {
			c.expect(strings.Fields(step.cmd)[0] + " OK")
		}
	}
}

// TestPipelinedLoginRefused: a back-end that stopped offering SASL-IR and refuses the
// pipelined login with NO (the credentials, not the syntax) is not asked again: the
// client gets the refusal, and the back-end saw one AUTHENTICATE, not two failures to
// count against the client.
func TestPipelinedLoginRefused(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := proxylisten.Wrap(raw, []string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	auths := make(chan int, 4)
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(i int) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(c)
				caps := "IMAP4rev1 AUTH=PLAIN"
				if i == 0 {
					caps += " SASL-IR"
				}
				io.WriteString(c, "* OK ["+caps+"] scripted\r\n")
				n := 0
				defer func() { auths <- n }()
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					tag, rest, _ := strings.Cut(strings.TrimRight(l, "\r\n"), " ")
					switch {
					case strings.HasPrefix(rest, "AUTHENTICATE PLAIN") && i == 0:
						n++
						io.WriteString(c, tag+" OK [CAPABILITY IMAP4rev1] in\r\n")
					case strings.HasPrefix(rest, "AUTHENTICATE PLAIN"):
						n++
						io.WriteString(c, tag+" NO [AUTHENTICATIONFAILED] refused\r\n")
					case rest == "LOGOUT":
						io.WriteString(c, "* BYE\r\n"+tag+" OK\r\n")
						return
					}
				}
			}(i)
		}
	}()
	dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "scripted"}}
	e := start(t, proxy.Config{HealthInterval: -1, Backends: map[string]proxy.Backend{"scripted": {IMAP: raw.Addr().String()}}}, dir)
	c := dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	c.expect("a OK")
	c.send("z LOGOUT")
	c.expect("z OK")
	c.c.Close()
	<-auths
	// The back-end is now known to offer SASL-IR: the next login is pipelined, and
	// refused.
	c = dialIMAP(t, e)
	c.send("a LOGIN alice@example.org \"secret pw\"")
	if l := c.expect("a "); !strings.HasPrefix(l, "a NO") {
		t.Errorf("login refused by the back-end: %q, want a NO", l)
	}
	c.c.Close()
	if n := <-auths; n != 1 {
		t.Errorf("the back-end was asked %d times, want 1", n)
	}
}
