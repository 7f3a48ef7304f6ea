package imapd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/store"
)

// replies are what the limits tests expect of the pool (Dovecot's words).
var replies = mailboxtest.Replies{
	Greeting: "* OK",
	Full:     "* BYE Too many connections, try again later",
	FullAddr: "* BYE Too many connections from your address",
	Evicted:  "* BYE Disconnected: too many connections waiting to log in",
}

// TestConnectionLimits: per address and per listener, a connection beyond the limit gets
// BYE and is closed, and a slot frees when a connection ends.
func TestConnectionLimits(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxConnectionsPerIP: 2, MaxConnections: 3, MaxLoginConnections: -1})
	mailboxtest.ConnectionLimits(t, e.addr, replies)
}

// TestLoginTimeoutAndCommands: a connection that does not log in within LoginTimeout, or
// sends more than MaxLoginCommands commands first, gets BYE and is closed — also one that
// drips a command a byte at a time; after LOGIN neither applies.
func TestLoginTimeoutAndCommands(t *testing.T) {
	// Long enough for every connection that must log in (an argon2id hash each) to do so
	// on a loaded machine under -race: at 700 ms the test failed there.
	const loginTimeout = 3 * time.Second
	e := start(t, Config{Trusted: true, LoginTimeout: loginTimeout, MaxLoginCommands: 3})

	idle, ir, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.1")
	drip, dr, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.1")
	go func() {
		for _, b := range []byte("a1 NOOP") {
			if _, err := drip.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(loginTimeout / 6) // the command is not whole when the timeout comes
		}
	}()
	r := dialRaw(t, e.addr)
	r.ok("LOGIN bob@example.org pw2")
	if l, _ := ir.ReadString('\n'); !strings.HasPrefix(l, "* BYE Disconnected: no login within") {
		t.Fatalf("idle: %q", l)
	}
	if !mailboxtest.ClosedWithin(idle, ir, 5*time.Second) {
		t.Fatal("idle connection not closed")
	}
	if !mailboxtest.ClosedWithin(drip, dr, 5*time.Second) {
		t.Fatal("dripping connection not closed")
	}
	for range 10 {
		r.ok("NOOP") // logged in: no limit, no timeout
	}
	time.Sleep(loginTimeout + 200*time.Millisecond)
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
// connection is served and the one that waited longest is closed; one that logged in
// does not count.
func TestLoginSlotsOldestGoes(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxLoginConnections: 2, MaxConnectionsPerIP: -1})
	authed := dialRaw(t, e.addr)
	authed.ok("LOGIN bob@example.org pw2") // not counted: it logged in
	mailboxtest.OldestGoes(t, e.addr, replies)
	authed.ok("NOOP")
}

// TestLoginSlotsBusiestAddressGoes: the connection that makes room is the oldest of the
// address with the most connections waiting, not the oldest of all: a flood from a few
// addresses that reconnects as fast as it is closed used to close every user's
// connection before its LOGIN was answered (TestE2ESoak in cmd/portcullis).
func TestLoginSlotsBusiestAddressGoes(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxLoginConnections: 3, MaxConnectionsPerIP: -1})
	user, ur, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.5") // waited longest, alone on its address
	time.Sleep(50 * time.Millisecond)
	flood1, fr1, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.6")
	time.Sleep(50 * time.Millisecond)
	flood2, fr2, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.6")
	time.Sleep(50 * time.Millisecond)
	for i, want := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{flood1, fr1}, {flood2, fr2}} {
		if _, _, l := mailboxtest.DialFrom(t, e.addr, "127.0.0.6"); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("new connection %d: %q", i, l)
		}
		if l, _ := want.r.ReadString('\n'); !strings.HasPrefix(l, "* BYE Disconnected: too many connections waiting to log in") {
			t.Fatalf("flood connection %d: %q", i, l)
		}
		if !mailboxtest.ClosedWithin(want.c, want.r, 2*time.Second) {
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
	lone, lr, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.7")
	for _, src := range []string{"127.0.0.8", "127.0.0.9"} {
		mailboxtest.DialFrom(t, e.addr, src)
		if mailboxtest.ClosedWithin(lone, lr, 300*time.Millisecond) {
			t.Fatalf("after a connection from %s the lone one of 127.0.0.7 went before those of 127.0.0.6", src)
		}
	}
	mailboxtest.DialFrom(t, e.addr, "127.0.0.10")
	if !mailboxtest.ClosedWithin(lone, lr, 2*time.Second) {
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
		conn, r, _ := mailboxtest.DialFrom(t, e.addr, src)
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
	mailboxtest.WaitFor(t, func() bool {
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
	if l := mailboxtest.ImplicitTLSLimits(t, e.srv, e.tls, replies); !strings.Contains(l, "AUTH=PLAIN") {
		t.Fatalf("greeting over TLS: %q", l)
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
