package web

import (
	"net/url"
	"strings"
	"testing"
)

// TestLoginNextStaysOnSite: a browser strips tabs and line breaks from a Location and
// reads "\" as "/", so every next below is another site to it; after the login the page
// sends the user to their quarantine instead.
func TestLoginNextStaysOnSite(t *testing.T) {
	r := newRig(t)
	for _, next := range []string{"//evil.example/", "/\t/evil.example/", "/\n/evil.example/", "/\\evil.example/", "/\t\\evil.example/", "https://evil.example/"} {
		c := r.client()
		c.get("/login?next=" + url.QueryEscape(next))
		_, _, h := c.post("/login", url.Values{"csrf": {c.csrf}, "username": {"alice@example.test"}, "password": {pw}, "next": {next}})
		if loc := h.Get("Location"); loc != "/quarantine" {
			t.Errorf("next=%q redirects to %q, want /quarantine", next, loc)
		}
	}
	// A path on the site is kept.
	c := r.client()
	c.get("/login")
	_, _, h := c.post("/login", url.Values{"csrf": {c.csrf}, "username": {"alice@example.test"}, "password": {pw}, "next": {"/senders?x=1"}})
	if loc := h.Get("Location"); loc != "/senders?x=1" {
		t.Errorf("next=/senders?x=1 redirects to %q", loc)
	}
}

// TestFlashNotFromTheURL: the page's status line says what the user's last form did; a
// link cannot put its own words there ("your password expired, log in at ...").
func TestFlashNotFromTheURL(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice@example.test")
	const lie = "Your password expired; log in again at evil.example"
	for _, p := range []string{"/quarantine", "/senders", "/admin/quarantine"} {
		if _, body, _ := c.get(p + "?done=" + url.QueryEscape(lie)); strings.Contains(body, "evil.example") {
			t.Errorf("%s shows the link's text", p)
		}
	}
	// The form's own message is shown once.
	c.post("/senders", url.Values{"csrf": {c.csrf}, "action": {"block"}, "sender": {"@spam.example"}})
	if _, body, _ := c.get("/senders"); !strings.Contains(body, `class="flash"`) {
		t.Errorf("no confirmation after adding a sender:\n%s", body)
	}
	if _, body, _ := c.get("/senders"); strings.Contains(body, `class="flash"`) {
		t.Error("the confirmation is shown twice")
	}
}
