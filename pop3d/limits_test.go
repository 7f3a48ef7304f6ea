package pop3d

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/store"
)

// replies are what the limits tests expect of the pool (RFC 3206 codes).
var replies = mailboxtest.Replies{
	Greeting: "+OK",
	Full:     "-ERR [SYS/TEMP] too many connections, try again later",
	FullAddr: "-ERR [SYS/TEMP] too many connections from your address",
	Evicted:  "-ERR [SYS/TEMP] disconnected: too many connections waiting to log in",
}

// TestConnectionLimits: per address and per listener, a connection beyond the limit gets
// -ERR [SYS/TEMP] and is closed; a slot frees when a session ends.
func TestConnectionLimits(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxConnectionsPerIP: 2, MaxConnections: 3, MaxLoginConnections: -1})
	mailboxtest.ConnectionLimits(t, e.addr, replies)
}

// TestLoginTimeoutAndCommands: a session that has not logged in within LoginTimeout is
// closed (without a response, RFC 1939 §3), also one that keeps sending a byte at a
// time; one that sends more than MaxLoginCommands before logging in gets -ERR and is
// closed; after the login neither applies.
func TestLoginTimeoutAndCommands(t *testing.T) {
	e := start(t, Config{Trusted: true, LoginTimeout: 600 * time.Millisecond, MaxLoginCommands: 3})
	e.deliver(t, "bob@example.org", msg1)
	idle, ir, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.1")
	drip, dr, _ := mailboxtest.DialFrom(t, e.addr, "127.0.0.1")
	go func() {
		for _, b := range []byte("USER bob@example.org") {
			if _, err := drip.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	in := dial(t, e.addr)
	in.cmd("USER bob@example.org", "+OK")
	in.cmd("PASS pw2", "+OK")
	start := time.Now()
	if !mailboxtest.ClosedWithin(idle, ir, 3*time.Second) || !mailboxtest.ClosedWithin(drip, dr, 3*time.Second) {
		t.Fatal("sessions that did not log in are still open")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
	time.Sleep(700 * time.Millisecond)
	for range 5 {
		in.cmd("NOOP", "+OK")
	}

	c := dial(t, e.addr)
	c.cmd("CAPA", "+OK")
	c.multi()
	c.cmd("USER bob@example.org", "+OK")
	c.cmd("PASS wrong", "-ERR")
	c.cmd("NOOP", "-ERR too many commands before login")
	if _, err := c.r.ReadLine(); err == nil {
		t.Fatal("still open after too many commands")
	}
}

// TestLoginSlotsOldestGoes: with MaxLoginConnections waiting to log in, a new connection
// is served and the one that waited longest is closed (Dovecot's pop3-login does too).
func TestLoginSlotsOldestGoes(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxLoginConnections: 2})
	mailboxtest.OldestGoes(t, e.addr, replies)
}

// TestImplicitTLSLimits: POP3S listeners have the same pool; the refusal goes over TLS.
func TestImplicitTLSLimits(t *testing.T) {
	e := start(t, Config{MaxConnectionsPerIP: 1})
	mailboxtest.ImplicitTLSLimits(t, e.srv, e.tls, replies)
}

// TestFailedLoginsLogQuietly: a client guessing passwords logs a bounded number of
// records, none at Error (issue 15 item 11).
func TestFailedLoginsLogQuietly(t *testing.T) {
	st := mailboxtest.Store(t, store.Config{})
	logs := &testenv.LockedBuffer{}
	srv, err := New(Config{Trusted: true, MaxLoginCommands: -1, MaxErrors: 1000},
		st, mailboxtest.Auth{"bob@example.org": "pw2"}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Forty clients guess at once (each failure waits half a second).
	var wg sync.WaitGroup
	attempts := make(chan int, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := net.Pipe()
			go srv.ServeConn(t.Context(), b)
			defer a.Close()
			r := bufio.NewReader(a)
			r.ReadString('\n')
			n := 0
			for start := time.Now(); time.Since(start) < 1500*time.Millisecond; n++ {
				fmt.Fprintf(a, "AUTH PLAIN AGJvYgB3cm9uZw==\r\n")
				if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "-ERR") {
					t.Errorf("attempt %d: %q", n, l)
					return
				}
			}
			attempts <- n
		}()
	}
	wg.Wait()
	close(attempts)
	total := 0
	for n := range attempts {
		total += n
	}
	if total < 100 {
		t.Fatalf("only %d attempts", total)
	}
	out := logs.String()
	if strings.Contains(out, "level=ERROR") {
		t.Fatalf("errors logged:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n > 40 {
		t.Fatalf("%d records for %d failed logins", n, total)
	}
}
