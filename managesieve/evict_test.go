package managesieve

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEvict: the sessions of a user that logged in before the cut get
// BYE (TRYLATER) "text" while they wait for a command (one in the middle of sending a
// PUTSCRIPT literal too) and are closed; a session that logged in after the cut, or of
// another user, is left; UNAUTHENTICATE and LOGOUT leave the registry.
func TestEvict(t *testing.T) {
	r := startServer(t, Config{})
	idle, _ := dial(t, r.addr)
	idle.login("alice@example.org", "secret pw")
	busy, _ := dial(t, r.addr)
	busy.login("alice@example.org", "secret pw")
	// A literal announced and half sent: the session is inside ReadCommand.
	if _, err := busy.conn.Write([]byte("PUTSCRIPT \"half\" {100+}\r\nrequire")); err != nil {
		t.Fatal(err)
	}
	bob, _ := dial(t, r.addr)
	bob.login("bob@example.org", "pw2")
	time.Sleep(10 * time.Millisecond) // a login after the cut is strictly later
	cut := time.Now()
	time.Sleep(10 * time.Millisecond)
	later, _ := dial(t, r.addr)
	later.login("alice@example.org", "secret pw")

	got := r.srv.LoggedIn()
	slices.Sort(got)
	if !slices.Equal(got, []string{"alice@example.org", "bob@example.org"}) {
		t.Fatalf("LoggedIn = %v", got)
	}
	if n := r.srv.Evict("alice@example.org", cut, "mailbox moving to another server, please reconnect"); n != 2 {
		t.Fatalf("evicted %d sessions, want 2", n)
	}
	for _, c := range []*client{idle, busy} {
		if l := last(c.response()); l != `BYE (TRYLATER) "mailbox moving to another server, please reconnect"` {
			t.Fatalf("evicted session got %q", l)
		}
		if l, err := c.r.ReadString('\n'); err == nil {
			t.Fatalf("the connection stayed open: %q", l)
		}
	}
	if l := last(later.cmd("NOOP")); !strings.HasPrefix(l, "OK") {
		t.Fatalf("the later session: %q", l)
	}
	if l := last(bob.cmd("NOOP")); !strings.HasPrefix(l, "OK") {
		t.Fatalf("another user's session: %q", l)
	}
	if l := last(bob.cmd("UNAUTHENTICATE")); !strings.HasPrefix(l, "OK") {
		t.Fatalf("UNAUTHENTICATE: %q", l)
	}
	if n := r.srv.Evict("bob@example.org", time.Now(), "moved"); n != 0 {
		t.Fatalf("evicted %d sessions of a user who logged out", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = r.srv.LoggedIn()
		if slices.Equal(got, []string{"alice@example.org"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("LoggedIn = %v, want the later session's user only", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	later.cmd("LOGOUT")
	for len(r.srv.LoggedIn()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a logged-out session stayed registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
