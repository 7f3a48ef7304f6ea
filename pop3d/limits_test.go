package pop3d

import (
	"bufio"
	"bytes"
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

// closedWithin reports whether the server closes the connection within d.
func closedWithin(c net.Conn, r *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	for {
		if _, err := r.ReadString('\n'); err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
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

// TestConnectionLimits: per address and per listener, a connection beyond the limit gets
// -ERR [SYS/TEMP] and is closed; a slot frees when a session ends.
func TestConnectionLimits(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxConnectionsPerIP: 2, MaxConnections: 3, MaxLoginConnections: -1})
	c1, _, l := dialFrom(t, e.addr, "127.0.0.1")
	if !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	dialFrom(t, e.addr, "127.0.0.1")
	if _, _, l := dialFrom(t, e.addr, "127.0.0.1"); l != "-ERR [SYS/TEMP] too many connections from your address" {
		t.Fatalf("third from one address: %q", l)
	}
	if _, _, l := dialFrom(t, e.addr, "127.0.0.2"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("other address: %q", l)
	}
	if _, _, l := dialFrom(t, e.addr, "127.0.0.3"); l != "-ERR [SYS/TEMP] too many connections, try again later" {
		t.Fatalf("fourth on the listener: %q", l)
	}
	fmt.Fprintf(c1, "QUIT\r\n")
	waitFor(t, func() bool {
		c, _, l := dialFrom(t, e.addr, "127.0.0.4")
		c.Close()
		return strings.HasPrefix(l, "+OK")
	})
}

// TestLoginTimeoutAndCommands: a session that has not logged in within LoginTimeout is
// closed (without a response, RFC 1939 §3), also one that keeps sending a byte at a
// time; one that sends more than MaxLoginCommands before logging in gets -ERR and is
// closed; after the login neither applies.
func TestLoginTimeoutAndCommands(t *testing.T) {
	e := start(t, Config{Trusted: true, LoginTimeout: 600 * time.Millisecond, MaxLoginCommands: 3})
	e.deliver(t, "bob@example.org", msg1)
	idle, ir, _ := dialFrom(t, e.addr, "127.0.0.1")
	drip, dr, _ := dialFrom(t, e.addr, "127.0.0.1")
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
	if !closedWithin(idle, ir, 3*time.Second) || !closedWithin(drip, dr, 3*time.Second) {
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
	first, fr, _ := dialFrom(t, e.addr, "127.0.0.1")
	time.Sleep(30 * time.Millisecond)
	dialFrom(t, e.addr, "127.0.0.1")
	time.Sleep(30 * time.Millisecond)
	if _, _, l := dialFrom(t, e.addr, "127.0.0.1"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("new connection: %q", l)
	}
	if l, _ := fr.ReadString('\n'); !strings.HasPrefix(l, "-ERR [SYS/TEMP] disconnected: too many connections waiting to log in") {
		t.Fatalf("oldest: %q", l)
	}
	if !closedWithin(first, fr, 2*time.Second) {
		t.Fatal("oldest not closed")
	}
}

// TestImplicitTLSLimits: POP3S listeners have the same pool; the refusal goes over TLS.
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
	if l := dial(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("first: %q", l)
	}
	if l := dial(); !strings.HasPrefix(l, "-ERR [SYS/TEMP] too many connections from your address") {
		t.Fatalf("second: %q", l)
	}
}

// logBuffer is a log sink safe for the server's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFailedLoginsLogQuietly: a client guessing passwords logs a bounded number of
// records, none at Error (issue 15 item 11).
func TestFailedLoginsLogQuietly(t *testing.T) {
	st, err := store.New(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &logBuffer{}
	srv, err := New(Config{Trusted: true, MaxLoginCommands: -1, MaxErrors: 1000},
		st, staticAuth{"bob@example.org": "pw2"}, slog.New(slog.NewTextHandler(logs, nil)))
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
