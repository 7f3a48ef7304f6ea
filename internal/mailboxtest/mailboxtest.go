// Package mailboxtest is what the tests of the mailbox servers, imapd and pop3d, share:
// a store in a temporary directory, an authenticator with fixed passwords, the server's
// own TLS certificate, a server running on loopback, and connections from chosen
// loopback addresses for their connection limits.
package mailboxtest

import (
	"bufio"
	"context"
	"crypto/tls"
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

// Auth is an authenticator with fixed passwords, user to password (the real one lives in
// auth); a wrong password or an unknown user is auth.ErrInvalid.
type Auth map[string]string

// Authenticate implements imapd.Authenticator and pop3d.Authenticator.
func (a Auth) Authenticate(_ context.Context, user, pass string, _ netip.Addr) (string, error) {
	if p, ok := a[user]; ok && p == pass {
		return user, nil
	}
	return "", auth.ErrInvalid
}

// Users are the users the servers' tests log in as.
var Users = Auth{"alice@example.org": "secret pw", "bob@example.org": "pw2"}

// Cert makes a self-signed certificate for localhost and 127.0.0.1 in a temporary
// directory, as the server makes its own, and returns the server's TLS config and the
// certificate's PEM file (for clients that verify it).
func Cert(tb testing.TB) (*tls.Config, string) {
	tb.Helper()
	dir := tb.TempDir()
	cert, err := smtpd.SelfSignedCertificate(dir, "localhost")
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		filepath.Join(dir, "tls", "selfsigned.crt")
}

// Store opens a store of cfg in a temporary directory, closed when the test ends.
func Store(tb testing.TB, cfg store.Config) *store.Store {
	tb.Helper()
	cfg.Dir = tb.TempDir()
	st, err := store.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// Deliver delivers msg into user's INBOX and returns its UID.
func Deliver(tb testing.TB, st *store.Store, user, msg string) uint32 {
	tb.Helper()
	uid, err := st.Deliver(context.Background(), user, "", strings.NewReader(msg), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return uid
}

// Inbox returns the messages of user's INBOX.
func Inbox(tb testing.TB, st *store.Store, user string) []store.Message {
	tb.Helper()
	u, err := st.Open(context.Background(), user)
	if err != nil {
		tb.Fatal(err)
	}
	defer u.Release()
	_, msgs, err := u.Messages(context.Background(), store.Inbox)
	if err != nil {
		tb.Fatal(err)
	}
	return msgs
}

// Server is an imapd or pop3d server.
type Server interface {
	Serve(net.Listener) error
	Close() error
}

// Serve runs srv on a new listener on 127.0.0.1 until the test ends and returns its
// address.
func Serve(tb testing.TB, srv Server) string {
	tb.Helper()
	addr := ServeTLS(tb, srv, nil)
	tb.Cleanup(func() { srv.Close() })
	return addr
}

// ServeTLS runs srv on another listener on 127.0.0.1, of implicit TLS with cfg
// (tls.NewListener) unless cfg is nil, and returns its address. It does not close srv.
func ServeTLS(tb testing.TB, srv Server, cfg *tls.Config) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	go srv.Serve(ln)
	return addr
}

// DialTLS connects to the implicit-TLS listener at addr without verifying its
// certificate and returns the connection, closed when the test ends, its reader and the
// first line the server sent.
func DialTLS(tb testing.TB, addr string) (*tls.Conn, *bufio.Reader, string) {
	tb.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	l, _ := r.ReadString('\n')
	return c, r, strings.TrimRight(l, "\r\n")
}

// DialFrom connects to addr from the loopback address src (Linux routes all of 127/8 to
// lo) and returns the connection, its reader and the first line the server sent. The
// connection is closed when the test ends.
func DialFrom(tb testing.TB, addr, src string) (net.Conn, *bufio.Reader, string) {
	tb.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	tb.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	l, _ := r.ReadString('\n')
	return c, r, strings.TrimRight(l, "\r\n")
}

// ClosedWithin reports whether the server closes c within d (whatever it sends first).
func ClosedWithin(c net.Conn, r *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	for {
		if _, err := r.ReadString('\n'); err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

// WaitFor polls f until it holds, for at most 10 seconds.
func WaitFor(tb testing.TB, f func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Replies are the lines a server answers a connection with before any command: its
// greeting and its refusals.
type Replies struct {
	Greeting string // the greeting starts with it
	Full     string // the listener is full
	FullAddr string // the client's address has its fill of the listener
	Evicted  string // the oldest connection waiting to log in, to make room
}

// ConnectionLimits checks the listener at addr, started with MaxConnections 3,
// MaxConnectionsPerIP 2 and no MaxLoginConnections: a connection beyond either limit
// gets the refusal and is closed, and a slot frees when a connection ends.
func ConnectionLimits(t *testing.T, addr string, r Replies) {
	t.Helper()
	greeted := func(what, l string) {
		t.Helper()
		if !strings.HasPrefix(l, r.Greeting) {
			t.Fatalf("%s: %q", what, l)
		}
	}
	c1, _, l := DialFrom(t, addr, "127.0.0.1")
	greeted("first", l)
	_, _, l = DialFrom(t, addr, "127.0.0.1")
	greeted("second from one address", l)
	if c, rd, l := DialFrom(t, addr, "127.0.0.1"); l != r.FullAddr || !ClosedWithin(c, rd, 2*time.Second) {
		t.Fatalf("third from one address: %q", l)
	}
	_, _, l = DialFrom(t, addr, "127.0.0.2")
	greeted("from another address", l)
	if c, rd, l := DialFrom(t, addr, "127.0.0.3"); l != r.Full || !ClosedWithin(c, rd, 2*time.Second) {
		t.Fatalf("fourth on the listener: %q", l)
	}
	c1.Close()
	WaitFor(t, func() bool {
		c, _, l := DialFrom(t, addr, "127.0.0.1")
		c.Close()
		return strings.HasPrefix(l, r.Greeting)
	})
}

// OldestGoes checks the listener at addr, started with MaxLoginConnections 2 and room
// enough otherwise: with two connections waiting to log in, a new one is served and the
// one that waited longest is closed with r.Evicted (Dovecot's login processes do the
// same), so a flood cannot lock users out.
func OldestGoes(t *testing.T, addr string, r Replies) {
	t.Helper()
	first, fr, _ := DialFrom(t, addr, "127.0.0.1")
	time.Sleep(50 * time.Millisecond)
	DialFrom(t, addr, "127.0.0.1")
	time.Sleep(50 * time.Millisecond)
	if _, _, l := DialFrom(t, addr, "127.0.0.1"); !strings.HasPrefix(l, r.Greeting) {
		t.Fatalf("new connection: %q", l)
	}
	if l, _ := fr.ReadString('\n'); !strings.HasPrefix(l, r.Evicted) {
		t.Fatalf("oldest: %q", l)
	}
	if !ClosedWithin(first, fr, 2*time.Second) {
		t.Fatal("oldest not closed")
	}
}

// ImplicitTLSLimits checks srv on an implicit-TLS listener of cfg, srv started with
// MaxConnectionsPerIP 1: the listener has a pool of its own, and the refusal arrives over
// TLS. It returns the greeting of the first connection.
func ImplicitTLSLimits(t *testing.T, srv Server, cfg *tls.Config, r Replies) string {
	t.Helper()
	addr := ServeTLS(t, srv, cfg)
	_, _, greeting := DialTLS(t, addr)
	if !strings.HasPrefix(greeting, r.Greeting) {
		t.Fatalf("first: %q", greeting)
	}
	if _, _, l := DialTLS(t, addr); l != r.FullAddr {
		t.Fatalf("second: %q", l)
	}
	return greeting
}
