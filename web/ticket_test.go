package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/route"
)

// TestTicketNeverAdmin: a digest link is a bearer credential lying in a mailbox; for an
// admin it opens a user's session, and the admin pages still want the password.
func TestTicketNeverAdmin(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "for-the-admin", "admin@example.test")
	tk := r.ticket("admin@example.test", id, "admin@example.test", time.Now().Add(time.Hour))
	c := r.client()
	if code, body, _ := c.openTicket(tk); code != 200 || !strings.Contains(body, "for-the-admin") {
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
	tk := r.ticket("bob@example.test", id, "bob@example.test", time.Now().Add(time.Hour))
	c := r.client()
	c.login("alice@example.test")
	if code, body, _ := c.openTicket(tk); code != http.StatusForbidden || strings.Contains(body, "bobs-mail") {
		t.Errorf("bob's ticket in alice's browser: %d", code)
	}
	if _, body, _ := c.get("/senders"); !strings.Contains(body, "alice@example.test") || strings.Contains(body, "bob@example.test") {
		t.Errorf("after bob's ticket the browser is not alice's any more:\n%s", body)
	}
}

// A digest link works once: the second click (another browser, a forwarded mail, a mail
// scanner that opened it first) gets the login form, which leads to the same item.
func TestTicketSingleUse(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "once-only", "alice@example.test")
	tk := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	first := r.client()
	if code, body, _ := first.openTicket(tk); code != 200 || !strings.Contains(body, "once-only") {
		t.Fatalf("first use: %d", code)
	}
	// The browser that used it (with its session) may open it again.
	if code, body, _ := first.openTicket(tk); code != 200 || !strings.Contains(body, "once-only") {
		t.Errorf("the same browser again: %d", code)
	}
	second := r.client()
	code, body, _ := second.openTicket(tk)
	if code != http.StatusForbidden || strings.Contains(body, "once-only") || !strings.Contains(body, "used already") {
		t.Fatalf("second use: %d\n%s", code, body)
	}
	if code, _, _ := second.get("/quarantine"); code != http.StatusSeeOther {
		t.Errorf("the second use opened a session: %d", code)
	}
	// The login form it shows goes to the item.
	code, _, h := second.post("/login", url.Values{"csrf": {second.csrf}, "username": {"alice@example.test"}, "password": {pw},
		"next": {ItemURL(id, "alice@example.test")}})
	if code != http.StatusSeeOther || h.Get("Location") != ItemURL(id, "alice@example.test") {
		t.Errorf("login after a used link: %d → %q", code, h.Get("Location"))
	}
}

// A link stops working when its account is deleted or its password changes after the
// digest was made: the mailbox may be why the password changed.
func TestTicketEndsWithCredentials(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	id := r.quarantine("x@spam.test", "changed-pw", "alice@example.test", "bob@example.test")
	alice := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	bob := r.ticket("bob@example.test", id, "bob@example.test", time.Now().Add(time.Hour))
	if err := r.users.DB.SetPassword(ctx, "alice@example.test", "another password"); err != nil {
		t.Fatal(err)
	}
	if err := r.users.DB.Delete(ctx, "bob@example.test"); err != nil {
		t.Fatal(err)
	}
	for name, tk := range map[string]string{"password changed": alice, "user deleted": bob} {
		c := r.client()
		if code, body, _ := c.openTicket(tk); code != http.StatusForbidden || strings.Contains(body, "changed-pw") {
			t.Errorf("%s: %d", name, code)
		}
		if code, _, _ := c.get("/quarantine"); code != http.StatusSeeOther {
			t.Errorf("%s: the link opened a session", name)
		}
	}
}

// The digest's links live Config.TicketLifetime, and the digest says how long.
func TestTicketLifetime(t *testing.T) {
	r := newRig(t)
	r.srv.cfg.TicketLifetime = 2 * time.Hour
	now := time.Now()
	r.srv.now = func() time.Time { return now }
	r.quarantine("x@spam.test", "short-lived", "alice@example.test")
	items, err := r.area.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := r.srv.digestMessage(context.Background(), "alice@example.test", "postmaster@example.test", items, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "works once, for 2 hours") {
		t.Errorf("the digest does not say the lifetime:\n%s", msg)
	}
	tk := msg[strings.Index(msg, "/ticket?t=")+len("/ticket?t="):]
	tk = tk[:strings.IndexAny(tk, "\r\n")]
	now = now.Add(2*time.Hour + time.Minute)
	if code, _, _ := r.client().openTicket(tk); code != http.StatusForbidden {
		t.Errorf("a link past its lifetime: %d", code)
	}
}

// An admin's allow or block on another user's message goes to the lists the rules read
// for its recipient: the users an alias delivers to, under their canonical names, not
// the alias as written.
func TestAdminListGoesToTheRecipientsUsers(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	id := r.quarantine("spammer@spam.test", "to-the-alias", "Sales@example.test")
	c := r.client()
	c.login("admin@example.test")
	code, body, _ := c.post("/quarantine/item", url.Values{"csrf": {c.csrf}, "id": {id}, "rcpt": {"Sales@example.test"}, "action": {"block"}})
	if code != http.StatusSeeOther {
		t.Fatalf("admin's block: %d\n%s", code, body)
	}
	if k, err := r.lists.Lookup(ctx, "alice@example.test", "spammer@spam.test"); err != nil || k != "block" {
		t.Errorf("alice's list (sales delivers to her): %q %v, want block", k, err)
	}
	if e, _ := r.lists.Entries(ctx, "Sales@example.test"); len(e) != 0 {
		t.Errorf("the block went on the alias as written: %+v", e)
	}
	if e, _ := r.lists.Entries(ctx, "admin@example.test"); len(e) != 0 {
		t.Errorf("the block went on the admin's own list: %+v", e)
	}
}

// An item addressed to an alias that several users share belongs to the address, as in
// Proxmox Mail Gateway's quarantine (a user sees the items of every address of theirs):
// any member may release it, and the copy goes to the alias, so every member gets it
// as accepted mail would have reached them; a deletion by one removes it for all.
func TestSharedAliasItem(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	released := r.quarantine("news@list.test", "team-news", "team@example.test")
	deleted := r.quarantine("news@list.test", "team-junk", "team@example.test")
	alice, bob := r.client(), r.client()
	alice.login("alice@example.test")
	bob.login("bob@example.test")
	for _, c := range []*client{alice, bob} {
		if _, body, _ := c.get("/quarantine"); !strings.Contains(body, "team-news") || !strings.Contains(body, "team-junk") {
			t.Fatalf("a member does not see the alias's items:\n%s", body)
		}
	}
	if code, _, _ := alice.post("/quarantine/item", url.Values{"csrf": {alice.csrf}, "id": {released}, "rcpt": {"team@example.test"}, "action": {"release"}}); code != http.StatusSeeOther {
		t.Fatalf("alice's release: %d", code)
	}
	if code, _, _ := bob.post("/quarantine/item", url.Values{"csrf": {bob.csrf}, "id": {deleted}, "rcpt": {"team@example.test"}, "action": {"delete"}}); code != http.StatusSeeOther {
		t.Fatalf("bob's deletion: %d", code)
	}
	for _, c := range []*client{alice, bob} {
		if _, body, _ := c.get("/quarantine"); strings.Contains(body, "team-news") || strings.Contains(body, "team-junk") {
			t.Errorf("an item acted on by one member is still shown to the other")
		}
	}
	// The released copy is queued for the alias, which delivery expands to both.
	ids, err := r.sp.List()
	if err != nil {
		t.Fatal(err)
	}
	copies := 0
	for _, id := range ids {
		env, err := r.sp.Envelope(id)
		if err == nil && !env.Quarantine && fmt.Sprint(env.To) == "[team@example.test]" {
			copies++
		}
	}
	if copies != 1 {
		t.Errorf("%d released copies queued for team@, want 1", copies)
	}
	finals, _ := expander{r.srv.deps.Owner.(*route.Router)}.ListOwners(ctx, "team@example.test")
	if fmt.Sprint(finals) != "[alice@example.test bob@example.test]" {
		t.Errorf("team@ delivers to %v", finals)
	}
}

// TestTicketGetSpendsNothing: a digest link's GET (what a mail scanner or a link preview
// fetches) shows a page naming the account and neither logs in nor uses the link up;
// the login is its button's POST, refused from another site and without the page's token.
func TestTicketGetSpendsNothing(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "scanned-first", "alice@example.test")
	tk := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	scanner := r.client()
	for range 2 {
		code, body, _ := scanner.get("/ticket?t=" + url.QueryEscape(tk))
		if code != 200 || !strings.Contains(body, "alice@example.test") || strings.Contains(body, "scanned-first") {
			t.Fatalf("GET of the link: %d\n%s", code, body)
		}
	}
	if code, _, _ := scanner.get("/quarantine"); code != http.StatusSeeOther {
		t.Errorf("a GET of the link opened a session: %d", code)
	}
	// The button's POST without the page's token, or from another site, does nothing.
	if code, _, _ := scanner.post("/ticket", url.Values{"t": {tk}}); code != http.StatusForbidden {
		t.Errorf("POST without the token: %d", code)
	}
	req, _ := http.NewRequest("POST", r.ts.URL+"/ticket", strings.NewReader(url.Values{"csrf": {scanner.csrf}, "t": {tk}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if code, _, _ := scanner.do(req); code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d", code)
	}
	// The user's own click still works once.
	if code, body, _ := r.client().openTicket(tk); code != 200 || !strings.Contains(body, "scanned-first") {
		t.Errorf("the user's click after the scanner's GETs: %d", code)
	}
}
