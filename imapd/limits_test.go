package imapd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/store"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLogged is startWith with the server's log in the returned buffer (Debug and up).
func startLogged(t *testing.T, cfg Config, scfg store.Config) (*env, *lockedBuffer) {
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
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, st, staticAuth{"alice@example.org": "secret pw", "bob@example.org": "pw2"}, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &env{store: st, srv: srv, addr: ln.Addr().String(), tls: tc, cert: cp}, logs
}

// dialFrom connects from a loopback source address and returns the first line.
func dialFrom(t *testing.T, addr, src string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	l, _ := r.ReadString('\n')
	return c, r, strings.TrimRight(l, "\r\n")
}

// closedSoon reports whether the server closes c within d.
func closedSoon(c net.Conn, r *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	for {
		if _, err := r.ReadString('\n'); err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

// TestConnectionLimits: per address and per listener, a connection beyond the limit gets
// BYE and is closed, and a slot frees when a connection ends.
func TestConnectionLimits(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxConnectionsPerIP: 3, MaxConnections: 5, MaxLoginConnections: -1})
	var conns []net.Conn
	for range 3 {
		c, _, l := dialFrom(t, e.addr, "127.0.0.1")
		if !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting %q", l)
		}
		conns = append(conns, c)
	}
	if _, _, l := dialFrom(t, e.addr, "127.0.0.1"); l != "* BYE Too many connections from your address" {
		t.Fatalf("4th from one address: %q", l)
	}
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		if _, _, l := dialFrom(t, e.addr, src); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("from %s: %q", src, l)
		}
	}
	if _, _, l := dialFrom(t, e.addr, "127.0.0.4"); l != "* BYE Too many connections, try again later" {
		t.Fatalf("6th on the listener: %q", l)
	}
	conns[0].Close()
	waitFor(t, func() bool {
		c, _, l := dialFrom(t, e.addr, "127.0.0.1")
		c.Close()
		return strings.HasPrefix(l, "* OK")
	})
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLoginTimeoutAndCommands: a connection that does not log in within LoginTimeout, or
// sends more than MaxLoginCommands commands first, gets BYE and is closed — also one that
// drips a command a byte at a time; after LOGIN neither applies.
func TestLoginTimeoutAndCommands(t *testing.T) {
	e := start(t, Config{Trusted: true, LoginTimeout: 700 * time.Millisecond, MaxLoginCommands: 3})

	idle, ir, _ := dialFrom(t, e.addr, "127.0.0.1")
	drip, dr, _ := dialFrom(t, e.addr, "127.0.0.1")
	go func() {
		for _, b := range []byte("a1 NOOP") {
			if _, err := drip.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()
	r := dialRaw(t, e.addr)
	r.ok("LOGIN bob@example.org pw2")
	start := time.Now()
	if l, _ := ir.ReadString('\n'); !strings.HasPrefix(l, "* BYE Disconnected: no login within") {
		t.Fatalf("idle: %q", l)
	}
	if !closedSoon(idle, ir, 2*time.Second) {
		t.Fatal("idle connection not closed")
	}
	if !closedSoon(drip, dr, 2*time.Second) {
		t.Fatal("dripping connection not closed")
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("closed after %v", time.Since(start))
	}
	for range 10 {
		r.ok("NOOP") // logged in: no limit, no timeout
	}
	time.Sleep(800 * time.Millisecond)
	r.ok("NOOP")

	c := dialRaw(t, e.addr)
	c.ok("NOOP")
	c.ok("CAPABILITY")
	c.cmd("LOGIN bob@example.org wrong")
	fmt.Fprintf(c.conn, "a9 NOOP\r\n")
	if l := c.line(); l != "* BYE Too many commands before login" {
		t.Fatalf("4th command: %q", l)
	}

	// Counted over TLS too (STARTTLS is one of them).
	c = dialRaw(t, e.addr)
	c.starttls()
	c.ok("NOOP")
	c.ok("NOOP")
	fmt.Fprintf(c.conn, "a9 NOOP\r\n")
	if l := c.line(); l != "* BYE Too many commands before login" {
		t.Fatalf("4th command over TLS: %q", l)
	}
}

// TestLoginSlotsOldestGoes: when MaxLoginConnections are waiting to log in, a new
// connection is served and the one that waited longest is closed (Dovecot's login
// processes do the same), so a flood cannot lock users out.
func TestLoginSlotsOldestGoes(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxLoginConnections: 2, MaxConnectionsPerIP: -1})
	authed := dialRaw(t, e.addr)
	authed.ok("LOGIN bob@example.org pw2") // not counted: it logged in
	first, fr, _ := dialFrom(t, e.addr, "127.0.0.1")
	time.Sleep(50 * time.Millisecond)
	_, _, _ = dialFrom(t, e.addr, "127.0.0.1")
	time.Sleep(50 * time.Millisecond)
	if _, _, l := dialFrom(t, e.addr, "127.0.0.1"); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("new connection: %q", l)
	}
	if l, _ := fr.ReadString('\n'); !strings.HasPrefix(l, "* BYE Disconnected: too many connections waiting to log in") {
		t.Fatalf("oldest: %q", l)
	}
	if !closedSoon(first, fr, 2*time.Second) {
		t.Fatal("oldest not closed")
	}
	authed.ok("NOOP")
}

// TestLoginSlotsBusiestAddressGoes: the connection that makes room is the oldest of the
// address with the most connections waiting, not the oldest of all: a flood from a few
// addresses that reconnects as fast as it is closed used to close every user's
// connection before its LOGIN was answered (TestE2ESoak in cmd/portcullis).
func TestLoginSlotsBusiestAddressGoes(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxLoginConnections: 3, MaxConnectionsPerIP: -1})
	user, ur, _ := dialFrom(t, e.addr, "127.0.0.5") // waited longest, alone on its address
	time.Sleep(50 * time.Millisecond)
	flood1, fr1, _ := dialFrom(t, e.addr, "127.0.0.6")
	time.Sleep(50 * time.Millisecond)
	flood2, fr2, _ := dialFrom(t, e.addr, "127.0.0.6")
	time.Sleep(50 * time.Millisecond)
	for i, want := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{flood1, fr1}, {flood2, fr2}} {
		if _, _, l := dialFrom(t, e.addr, "127.0.0.6"); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("new connection %d: %q", i, l)
		}
		if l, _ := want.r.ReadString('\n'); !strings.HasPrefix(l, "* BYE Disconnected: too many connections waiting to log in") {
			t.Fatalf("flood connection %d: %q", i, l)
		}
		if !closedSoon(want.c, want.r, 2*time.Second) {
			t.Fatalf("flood connection %d not closed", i)
		}
	}
	// The user's connection is still there and logs in.
	fmt.Fprintf(user, "a LOGIN bob@example.org pw2\r\n")
	if l, _ := ur.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("user's LOGIN: %q", l)
	}
	// Waiting now: two from 127.0.0.6. One from .7, then one from .8 closes the older of
	// .6's; with one connection waiting per address the oldest of all goes again: one
	// from .9 closes the other of .6, one from .10 the one of .7.
	lone, lr, _ := dialFrom(t, e.addr, "127.0.0.7")
	for _, src := range []string{"127.0.0.8", "127.0.0.9"} {
		dialFrom(t, e.addr, src)
		if closedSoon(lone, lr, 300*time.Millisecond) {
			t.Fatalf("after a connection from %s the lone one of 127.0.0.7 went before those of 127.0.0.6", src)
		}
	}
	dialFrom(t, e.addr, "127.0.0.10")
	if !closedSoon(lone, lr, 2*time.Second) {
		t.Fatal("with no busier address the oldest did not go")
	}
}

// TestUserLimits: one user's sessions from one address beyond MaxUserIPConnections, and
// from anywhere beyond MaxUserConnections, are refused at LOGIN with Dovecot's answer;
// a session that ends frees its place.
func TestUserLimits(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxUserIPConnections: 2, MaxUserConnections: 3})
	a := dialRaw(t, e.addr)
	a.ok("LOGIN bob@example.org pw2")
	b := dialRaw(t, e.addr)
	b.ok("LOGIN bob@example.org pw2")
	c := dialRaw(t, e.addr)
	if _, st := c.cmd("LOGIN bob@example.org pw2"); st != "NO [UNAVAILABLE] Maximum number of connections from user+IP exceeded (max_user_ip_connections=2)" {
		t.Fatalf("third from one address: %q", st)
	}
	c.ok("LOGIN alice@example.org \"secret pw\"") // another user is not affected
	other := func(src string) string {
		conn, r, _ := dialFrom(t, e.addr, src)
		fmt.Fprintf(conn, "x LOGIN bob@example.org pw2\r\n")
		l, _ := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n")
	}
	if st := other("127.0.0.2"); !strings.HasPrefix(st, "x OK") {
		t.Fatalf("from another address: %q", st)
	}
	if st := other("127.0.0.3"); st != "x NO [UNAVAILABLE] Maximum number of connections of user exceeded (max_user_connections=3)" {
		t.Fatalf("fourth of the user: %q", st)
	}
	a.ok("LOGOUT")
	waitFor(t, func() bool {
		d := dialRaw(t, e.addr)
		_, st := d.cmd("LOGIN bob@example.org pw2")
		d.conn.Close()
		return strings.HasPrefix(st, "OK")
	})
}

// TestImplicitTLSLimits: a tls.NewListener listener gets the same pool; the refusal is
// sent over TLS.
func TestImplicitTLSLimits(t *testing.T) {
	e := start(t, Config{MaxConnectionsPerIP: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(tls.NewListener(ln, e.tls))
	dial := func() string {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	if l := dial(); !strings.HasPrefix(l, "* OK") || !strings.Contains(l, "AUTH=PLAIN") {
		t.Fatalf("first: %q", l)
	}
	if l := dial(); !strings.HasPrefix(l, "* BYE Too many connections from your address") {
		t.Fatalf("second: %q", l)
	}
}

// TestRefusedOperationsLogQuietly: a client repeating a refused CREATE (over the mailbox
// cap) logs nothing at Error and a bounded number of records (issue 15 item 11).
func TestRefusedOperationsLogQuietly(t *testing.T) {
	e, logs := startLogged(t, Config{Trusted: true}, store.Config{MaxMailboxes: 5})
	r := dialRaw(t, e.addr)
	r.ok("LOGIN bob@example.org pw2")
	for i := range 300 {
		r.cmd("CREATE f%d", i)
		r.cmd("SELECT nonexistent%d", i)
	}
	out := logs.String()
	if n := strings.Count(out, "level=ERROR"); n != 0 {
		t.Fatalf("%d ERROR records:\n%s", n, out)
	}
	if n := strings.Count(out, "\n"); n > 100 {
		t.Fatalf("%d log records for 600 refused commands", n)
	}
}

// TestMemBudget: reservations beyond the budget wait, in order, until room is released;
// a waiter whose context ends gets NO [UNAVAILABLE]; one larger than the budget takes all
// of it.
func TestMemBudget(t *testing.T) {
	b := newMemBudget(100)
	r1, err := b.acquire(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 2)
	go func() {
		r, err := b.acquire(t.Context(), 70)
		if err == nil {
			got <- 70
			r()
		}
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.acquire(ctx, 10); err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Fatalf("behind a waiter: %v", err) // in order: the 70 waits first
	}
	r1()
	if n := <-got; n != 70 {
		t.Fatal(n)
	}
	r, err := b.acquire(t.Context(), 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	r()
	if b.used != 0 || len(b.waiters) != 0 {
		t.Fatalf("used %d waiters %d", b.used, len(b.waiters))
	}
}
