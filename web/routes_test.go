package web

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
)

// pageRoute is one line of Server.routes.
type pageRoute struct{ method, path, wrap string }

var routeRE = regexp.MustCompile(`m\.HandleFunc\("(GET|POST) ([^"]+)", (s\.(user|admin)\()?`)

// routes reads the page's routes from web.go, so that a route added later without its
// guard (s.user, s.admin) or its CSRF check fails TestEveryRouteGuarded.
func routes(t *testing.T) []pageRoute {
	t.Helper()
	src, err := os.ReadFile("web.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []pageRoute
	for _, m := range routeRE.FindAllStringSubmatch(string(src), -1) {
		p := strings.ReplaceAll(strings.ReplaceAll(m[2], "{$}", ""), "{id}", "1")
		out = append(out, pageRoute{m[1], p, m[4]})
	}
	if len(out) < 15 {
		t.Fatalf("only %d routes found in web.go: the pattern no longer matches", len(out))
	}
	return out
}

// public are the routes a visitor without a session reaches: the login, the digest
// links (their POSTs have the double-submit token) and the home page's redirect.
var public = map[string]bool{"GET /": true, "GET /login": true, "POST /login": true, "GET /ticket": true, "POST /ticket": true}

// Every route: without a session, a private one sends to the login (GET) or refuses
// (POST); every POST, public or not, refuses a form without its CSRF token and one with
// another session's; the admin pages refuse a user and serve an admin.
func TestEveryRouteGuarded(t *testing.T) {
	r := newRig(t)
	anon := r.client()
	alice := r.client()
	alice.login("alice@example.test")
	bob := r.client()
	bob.login("bob@example.test")
	admin := r.client()
	admin.login("admin@example.test")
	for _, rt := range routes(t) {
		key := rt.method + " " + rt.path
		switch {
		case public[key]:
			if rt.wrap != "" {
				t.Errorf("%s: public route wrapped in s.%s", key, rt.wrap)
			}
		case rt.wrap == "":
			t.Errorf("%s: neither s.user nor s.admin guards it", key)
			continue
		case strings.HasPrefix(rt.path, "/admin") != (rt.wrap == "admin"):
			t.Errorf("%s: guarded by s.%s", key, rt.wrap)
		}
		if rt.method == "GET" {
			if !public[key] {
				if code, _, h := anon.get(rt.path); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
					t.Errorf("%s without a session: %d %q, want a redirect to the login", key, code, h.Get("Location"))
				}
			}
			if rt.wrap == "admin" {
				if code, _, _ := alice.get(rt.path); code != http.StatusForbidden {
					t.Errorf("%s as a user: %d, want 403", key, code)
				}
				if code, _, _ := admin.get(rt.path); code != http.StatusOK {
					t.Errorf("%s as an admin: %d", key, code)
				}
			}
			continue
		}
		for name, c := range map[string]*client{"no session": anon, "alice": alice} {
			for _, tok := range []string{"", bob.csrf} {
				form := url.Values{"action": {"delete"}, "t": {"x"}, "username": {"alice@example.test"}, "password": {pw}}
				if tok != "" {
					form.Set("csrf", tok)
				}
				code, _, _ := c.post(rt.path, form)
				if code != http.StatusForbidden && code != http.StatusUnauthorized {
					t.Errorf("POST %s (%s) with token %q: %d, want 403 or 401", rt.path, name, tok, code)
				}
			}
		}
	}
	// Alice's session is intact (the refused logout did nothing), and her token, derived
	// from her cookie, is the same after a restart with the same key file.
	tok := alice.csrf
	if code, _, _ := alice.get("/senders"); code != http.StatusOK || alice.csrf != tok {
		t.Fatalf("alice after the refused forms: %d", code)
	}
	r.srv = r.restarted(Config{})
	r.ts = httptestServer(t, r.srv)
	if code, _, _ := alice.get("/senders"); code != http.StatusOK || alice.csrf != tok {
		t.Errorf("alice's CSRF token after a restart: %d, changed %v", code, alice.csrf != tok)
	}
}
