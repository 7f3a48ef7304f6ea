package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Bad input gets BAD or NO and the session goes on (issue 16, acceptance "Bad input"):
// literal bombs before and after login are refused before the client sends them, deep
// nesting in SEARCH, absurd sequence sets and partial offsets are refused, and the next
// command is answered.
func TestBadInputSessionSurvives(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)

	// refused sends a line and expects the tagged status prefix, with no continuation
	// request before it (the literal is never asked for).
	refused := func(line, want string) {
		t.Helper()
		fmt.Fprintf(r.conn, "%s\r\n", line)
		for {
			l := r.line()
			if strings.HasPrefix(l, "+") {
				t.Fatalf("%.60q: continuation request %q for a refused literal", line, l)
			}
			if strings.HasPrefix(l, "x ") {
				if !strings.HasPrefix(l, "x "+want) {
					t.Fatalf("%.60q: %q, want %q", line, l, want)
				}
				return
			}
		}
	}

	refused("x LOGIN {999999999}", "BAD [TOOBIG]")
	refused("x LOGIN alice@example.org {999999999}", "BAD [TOOBIG]")
	r.ok("NOOP")
	r.ok(`LOGIN alice@example.org "secret pw"`)
	refused("x APPEND INBOX {999999999}", "NO [TOOBIG]")
	refused(`x APPEND INBOX (\Seen) {999999999}`, "NO [TOOBIG]")
	refused("x SEARCH TEXT {999999999}", "BAD") // not selected, but the literal is refused first
	r.ok("SELECT INBOX")
	refused("x SEARCH TEXT {999999999}", "BAD [TOOBIG]")
	refused("x SEARCH "+strings.Repeat("(", 200)+"ALL"+strings.Repeat(")", 200), "BAD [LIMIT]")
	refused("x SEARCH "+strings.Repeat("NOT ", 5000)+"ALL", "BAD [LIMIT]")
	refused("x SEARCH "+strings.Repeat("OR ALL ", 5000)+"ALL", "BAD [LIMIT]")
	refused("x FETCH 4294967296 FLAGS", "BAD")
	refused("x FETCH 0:1 FLAGS", "BAD")
	refused("x FETCH "+strings.Repeat("1,", 20000)+"1 FLAGS", "BAD [LIMIT]")
	refused("x FETCH 1 BODY[]<99999999999.1>", "BAD")
	refused("x FETCH 1 BODY[]<0.99999999999>", "BAD")
	refused("x FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.0]", "BAD")
	refused("x NOOP "+strings.Repeat("y", 100<<10), "BAD [TOOBIG]")
	// Valid but absurd: the whole 32-bit range, and a partial beyond the message.
	if lines := r.ok("FETCH 1:4294967295 (UID)"); len(lines) != 1 {
		t.Errorf("FETCH 1:4294967295: %q", lines)
	}
	if lines := r.ok("UID FETCH 4294967295:1 (UID)"); len(lines) != 1 {
		t.Errorf("UID FETCH 4294967295:1: %q", lines)
	}
	lines := r.ok("FETCH 1 BODY.PEEK[]<4294967295.4294967295>")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "BODY[]<4294967295> {0}") {
		t.Errorf("partial beyond the end: %q", lines)
	}
	if lines := r.ok("FETCH 1 (UID)"); len(lines) != 1 {
		t.Errorf("after the bad input: %q", lines)
	}
}

// A non-synchronising literal too big to skip cannot be resynchronised with: the server
// says BYE and closes that connection, and goes on serving others.
func TestLiteralPlusBombClosesConnection(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	fmt.Fprintf(r.conn, "x APPEND INBOX {999999999+}\r\n")
	r.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("LITERAL+ bomb: %q, want BYE", l)
	}
	if _, err := r.r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after BYE")
	}
	r2 := dialRaw(t, e.addr)
	r2.ok(`LOGIN alice@example.org "secret pw"`)
}
