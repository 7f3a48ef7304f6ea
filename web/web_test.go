package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestLoginSessionAndHeaders(t *testing.T) {
	r := newRig(t)
	c := r.client()
	code, _, h := c.get("/quarantine")
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Fatalf("anonymous GET /quarantine: %d %s, want a redirect to /login", code, h.Get("Location"))
	}
	if code, _, _ := c.post("/quarantine/item", url.Values{"action": {"release"}}); code != http.StatusUnauthorized {
		t.Errorf("anonymous POST: %d, want 401", code)
	}
	c.get("/login")
	resp, err := c.hc.PostForm(r.ts.URL+"/login", url.Values{"csrf": {c.csrf}, "username": {"alice@example.test"}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "portcullis" {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || len(session.Value) < 40 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict and a long random id", session)
	}
	code, body, h := c.get("/quarantine")
	if code != 200 || !strings.Contains(body, "alice@example.test") {
		t.Fatalf("after login: %d\n%s", code, body)
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, " on") && strings.Contains(body, "onclick") {
		t.Errorf("inline script or style in the page:\n%s", body)
	}
	// Logout ends the session on the server: the old cookie is worthless.
	if code, _, _ := c.post("/logout", url.Values{"csrf": {c.csrf}}); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	req, _ := http.NewRequest("GET", r.ts.URL+"/quarantine", nil)
	req.AddCookie(session)
	if code, _, _ := r.client().do(req); code != http.StatusSeeOther {
		t.Errorf("old session cookie after logout: %d, want a redirect to login", code)
	}
	if n := r.srv.sessions.count(context.Background()); n != 0 {
		t.Errorf("%d sessions after logout", n)
	}
}

func TestSessionExpiry(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	r.srv.now = func() time.Time { return now }
	r.srv.sessions.now = r.srv.now
	c := r.client()
	c.login("alice@example.test")
	now = now.Add(31 * time.Minute) // idle timeout 30m
	if code, _, _ := c.get("/quarantine"); code != http.StatusSeeOther {
		t.Errorf("idle session still works: %d", code)
	}
	c.login("alice@example.test")
	for range 30 { // used every 25 minutes, but 12h after login it ends
		now = now.Add(25 * time.Minute)
		c.get("/senders")
	}
	if code, _, _ := c.get("/quarantine"); code != http.StatusSeeOther {
		t.Errorf("session older than its lifetime still works: %d", code)
	}
}

func TestLoginRefusals(t *testing.T) {
	r := newRig(t)
	c := r.client()
	// No login cookie / token: refused before the password is looked at.
	if code, _, _ := c.post("/login", url.Values{"username": {"alice@example.test"}, "password": {pw}}); code != http.StatusForbidden {
		t.Errorf("login without the form's token: %d, want 403", code)
	}
	c.get("/login")
	if code, _, _ := c.post("/login", url.Values{"csrf": {"forged"}, "username": {"alice@example.test"}, "password": {pw}}); code != http.StatusForbidden {
		t.Errorf("login with a wrong token: %d, want 403", code)
	}
	// A cross-origin POST is refused whatever it carries.
	c.get("/login")
	req, _ := http.NewRequest("POST", r.ts.URL+"/login", strings.NewReader(url.Values{"csrf": {c.csrf}, "username": {"alice@example.test"}, "password": {pw}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if code, _, _ := c.do(req); code != http.StatusForbidden {
		t.Errorf("cross-origin login: %d, want 403", code)
	}
	// An open redirect through next= stays on the site.
	c.get("/login?next=//evil.example/")
	_, _, h := c.post("/login", url.Values{"csrf": {c.csrf}, "username": {"alice@example.test"}, "password": {pw}, "next": {"//evil.example/"}})
	if loc := h.Get("Location"); loc != "/quarantine" {
		t.Errorf("next=//evil.example redirects to %q", loc)
	}
}

// Password guessing through the page meets the same throttle as IMAP: after the allowed
// failures even the right password is refused for a while.
func TestLoginThrottled(t *testing.T) {
	r := newRig(t)
	c := r.client()
	var codes []int
	for range 7 {
		c.get("/login")
		code, _, _ := c.post("/login", url.Values{"csrf": {c.csrf}, "username": {"bob@example.test"}, "password": {"guess"}})
		codes = append(codes, code)
	}
	if codes[0] != http.StatusUnauthorized || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("answers to repeated wrong passwords: %v, want 401 first and 429 at the end", codes)
	}
	c.get("/login")
	code, body, _ := c.post("/login", url.Values{"csrf": {c.csrf}, "username": {"bob@example.test"}, "password": {pw}})
	if code != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed logins") {
		t.Errorf("right password while throttled: %d", code)
	}
}

func TestCSRFRequiredOnEveryForm(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "hello", "alice@example.test")
	c := r.client()
	c.login("alice@example.test")
	forms := []struct {
		path string
		form url.Values
	}{
		{"/quarantine/item", url.Values{"id": {id}, "rcpt": {"alice@example.test"}, "action": {"release"}}},
		{"/quarantine/item", url.Values{"id": {id}, "rcpt": {"alice@example.test"}, "action": {"delete"}}},
		{"/quarantine/item", url.Values{"id": {id}, "rcpt": {"alice@example.test"}, "action": {"block"}}},
		{"/senders", url.Values{"action": {"allow"}, "sender": {"a@b.test"}}},
		{"/senders", url.Values{"action": {"digest"}, "digest": {"daily"}}},
		{"/logout", url.Values{}},
	}
	other := r.client()
	other.login("bob@example.test") // another session's valid token
	for _, f := range forms {
		for _, tok := range []string{"", "x", other.csrf} {
			form := url.Values{}
			for k, v := range f.form {
				form[k] = v
			}
			if tok != "" {
				form.Set("csrf", tok)
			}
			if code, _, _ := c.post(f.path, form); code != http.StatusForbidden {
				t.Errorf("POST %s %v with token %q: %d, want 403", f.path, f.form, tok, code)
			}
		}
	}
	if _, err := r.area.Get(id, "alice@example.test"); err != nil {
		t.Errorf("a refused form changed the quarantine: %v", err)
	}
	if e, _ := r.lists.Entries(context.Background(), "alice@example.test"); len(e) != 0 {
		t.Errorf("a refused form changed the lists: %v", e)
	}
	if code, _, _ := c.get("/quarantine"); code != 200 {
		t.Errorf("logout without a token ended the session: %d", code)
	}
}
