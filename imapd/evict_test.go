package imapd

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEvict: the sessions of a user that logged in before the cut get BYE [UNAVAILABLE]
// and are closed, mid-IDLE included; a session that logged in after it, and another
// user's, are left.
func TestEvict(t *testing.T) {
	e := start(t, Config{})
	idle := dialRaw(t, e.addr)
	idle.starttls()
	idle.ok(`LOGIN alice@example.org "secret pw"`)
	idle.ok("SELECT INBOX")
	plain := dialRaw(t, e.addr)
	plain.starttls()
	plain.ok(`LOGIN alice@example.org "secret pw"`)
	if _, err := idle.conn.Write([]byte("i1 IDLE\r\n")); err != nil {
		t.Fatal(err)
	}
	if l := idle.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	time.Sleep(10 * time.Millisecond) // a login after the cut is strictly later
	cut := time.Now()
	time.Sleep(10 * time.Millisecond)
	later := dialRaw(t, e.addr)
	later.starttls()
	later.ok(`LOGIN alice@example.org "secret pw"`)

	if got := e.srv.LoggedIn(); !slices.Equal(got, []string{"alice@example.org"}) {
		t.Fatalf("LoggedIn = %v", got)
	}
	if n := e.srv.Evict("bob@example.org", cut, "moved"); n != 0 {
		t.Fatalf("evicted %d sessions of a user without any", n)
	}
	if n := e.srv.Evict("alice@example.org", cut, "mailbox moved, please reconnect"); n != 2 {
		t.Fatalf("evicted %d sessions, want 2", n)
	}
	for _, r := range []*raw{idle, plain} {
		if l := r.line(); l != "* BYE [UNAVAILABLE] mailbox moved, please reconnect" {
			t.Fatalf("evicted session got %q", l)
		}
		if l, err := r.r.ReadString('\n'); err == nil {
			t.Fatalf("the connection stayed open: %q", l)
		}
	}
	later.ok("NOOP")
	// The closed sessions left the registry; the later one is still in it.
	count := func() int { return len(e.srv.sessions.Before("alice@example.org", time.Now().Add(time.Hour))) }
	deadline := time.Now().Add(10 * time.Second)
	for count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions registered, want the later one only", count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	later.ok("LOGOUT")
	for count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a logged-out session stayed registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
