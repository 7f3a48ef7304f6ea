package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTicketNeverAdmin: a digest link is a bearer credential lying in a mailbox; for an
// admin it opens a user's session, and the admin pages still want the password.
func TestTicketNeverAdmin(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "for-the-admin", "admin@example.test")
	tk := r.srv.Ticket("admin@example.test", id, "admin@example.test", time.Now().Add(time.Hour))
	c := r.client()
	if code, body, _ := c.get("/ticket?t=" + url.QueryEscape(tk)); code != 200 || !strings.Contains(body, "for-the-admin") {
		t.Fatalf("admin's ticket: %d\n%s", code, body)
	}
	if code, _, _ := c.get("/admin/quarantine"); code != http.StatusForbidden {
		t.Errorf("admin page after a ticket login: %d, want 403", code)
	}
	// The password login still gives the role.
	c = r.client()
	c.login("admin@example.test")
	if code, _, _ := c.get("/admin/quarantine"); code != 200 {
		t.Errorf("admin page after a password login: %d", code)
	}
}

// TestTicketDoesNotSwitchAccounts: a ticket of another account (an attacker's own, sent
// to a victim) does not replace the session the browser has: that would be a login CSRF.
func TestTicketDoesNotSwitchAccounts(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "bobs-mail", "bob@example.test")
	tk := r.srv.Ticket("bob@example.test", id, "bob@example.test", time.Now().Add(time.Hour))
	c := r.client()
	c.login("alice@example.test")
	if code, body, _ := c.get("/ticket?t=" + url.QueryEscape(tk)); code != http.StatusForbidden || strings.Contains(body, "bobs-mail") {
		t.Errorf("bob's ticket in alice's browser: %d", code)
	}
	if _, body, _ := c.get("/senders"); !strings.Contains(body, "alice@example.test") || strings.Contains(body, "bob@example.test") {
		t.Errorf("after bob's ticket the browser is not alice's any more:\n%s", body)
	}
}
