package pop3d

import (
	"crypto/tls"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
)

// TestEvict: a session of a user that logged in before the cut is told
// "-ERR [SYS/TEMP] ..." while it waits for a command and closed, without committing its
// DELE; the maildrop is free again at once; a session that logged in after the cut is
// left; a QUIT after the eviction is not run.
func TestEvict(t *testing.T) {
	e := start(t, Config{})
	e.deliver(t, "alice@example.org", msg1)
	e.deliver(t, "bob@example.org", msg2)
	before := dial(t, e.addr)
	before.starttls(&tls.Config{InsecureSkipVerify: true})
	before.cmd("USER alice@example.org", "+OK")
	before.cmd("PASS secret pw", "+OK maildrop has 1")
	before.cmd("DELE 1", "+OK")
	time.Sleep(10 * time.Millisecond) // a login after the cut is strictly later
	cut := time.Now()
	time.Sleep(10 * time.Millisecond)
	later := dial(t, e.addr)
	later.starttls(&tls.Config{InsecureSkipVerify: true})
	later.cmd("USER bob@example.org", "+OK")
	later.cmd("PASS pw2", "+OK maildrop has 1")

	got := e.srv.LoggedIn()
	slices.Sort(got)
	if !slices.Equal(got, []string{"alice@example.org", "bob@example.org"}) {
		t.Fatalf("LoggedIn = %v", got)
	}
	if n := e.srv.Evict("bob@example.org", cut, "moved"); n != 0 {
		t.Fatalf("evicted %d sessions that logged in after the cut", n)
	}
	if n := e.srv.Evict("alice@example.org", cut, "mailbox moving to another server, please reconnect"); n != 1 {
		t.Fatalf("evicted %d sessions, want 1", n)
	}
	before.expect("-ERR [SYS/TEMP] mailbox moving to another server, please reconnect")
	if l, err := before.r.ReadLine(); err == nil {
		t.Fatalf("the connection stayed open: %q", l)
	}
	// The DELE was not committed, and the maildrop is free for the next login.
	if msgs := mailboxtest.Inbox(t, e.store, "alice@example.org"); len(msgs) != 1 {
		t.Fatalf("alice has %d messages after the eviction, want 1 (no UPDATE)", len(msgs))
	}
	again := dial(t, e.addr)
	again.starttls(&tls.Config{InsecureSkipVerify: true})
	again.cmd("USER alice@example.org", "+OK")
	again.cmd("PASS secret pw", "+OK maildrop has 1")
	later.cmd("NOOP", "+OK")

	// A session evicted between its DELE and its QUIT commits nothing: the QUIT that
	// follows finds the session ended.
	again.cmd("DELE 1", "+OK")
	time.Sleep(10 * time.Millisecond)
	if n := e.srv.Evict("alice@example.org", time.Now(), "moved"); n != 1 {
		t.Fatalf("evicted %d sessions, want 1", n)
	}
	if n := e.srv.Evict("alice@example.org", time.Now(), "moved"); n != 0 {
		t.Fatalf("a session asked to end was counted again (%d)", n)
	}
	if _, err := again.conn.Write([]byte("QUIT\r\n")); err == nil {
		again.expect("-ERR [SYS/TEMP] moved")
	}
	if msgs := mailboxtest.Inbox(t, e.store, "alice@example.org"); len(msgs) != 1 {
		t.Fatalf("alice has %d messages after an evicted QUIT, want 1", len(msgs))
	}
	deadline := time.Now().Add(10 * time.Second)
	for slices.Contains(e.srv.LoggedIn(), "alice@example.org") {
		if time.Now().After(deadline) {
			t.Fatal("an evicted session stayed registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	later.cmd("QUIT", "+OK")
	for len(e.srv.LoggedIn()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a session that quit stayed registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
