package web

import (
	"net/url"
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
