package web

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

// Every handler, asked by bob for alice's quarantined mail (by URL, id or search), answers
// as if it did not exist, and changes nothing.
func TestNoAccessToAnotherUsersMail(t *testing.T) {
	r := newRig(t)
	aliceID := r.quarantine("x@spam.test", "secret-for-alice", "alice@example.test")
	salesID := r.quarantine("y@spam.test", "secret-for-sales", "sales@example.test") // alias of alice
	bothID := r.quarantine("z@spam.test", "secret-for-both", "alice@example.test", "bob@example.test")

	bob := r.client()
	bob.login("bob@example.test")
	for _, path := range []string{"/quarantine", "/quarantine?q=secret", "/quarantine?q=secret-for-alice", "/quarantine/charts", "/senders"} {
		code, body, _ := bob.get(path)
		if code != 200 {
			t.Errorf("bob GET %s: %d", path, code)
		}
		for _, leak := range []string{"secret-for-alice", "secret-for-sales", aliceID, salesID, "x@spam.test", "y@spam.test"} {
			if strings.Contains(body, leak) && !strings.Contains(path, leak) { // the search box shows the query
				t.Errorf("bob GET %s shows %q", path, leak)
			}
		}
	}
	// His own copy of the shared message, yes; alice's copy of it, no.
	if _, body, _ := bob.get("/quarantine"); !strings.Contains(body, "secret-for-both") {
		t.Error("bob does not see his own quarantined message")
	}
	for _, q := range []url.Values{
		{"id": {aliceID}, "rcpt": {"alice@example.test"}},
		{"id": {salesID}, "rcpt": {"sales@example.test"}},
		{"id": {bothID}, "rcpt": {"alice@example.test"}},
		{"id": {aliceID}, "rcpt": {"bob@example.test"}}, // his address, not on that message
		{"id": {"../../etc/passwd"}, "rcpt": {"bob@example.test"}},
	} {
		code, body, _ := bob.get("/quarantine/item?" + q.Encode())
		if code != http.StatusNotFound || strings.Contains(body, "secret-for") {
			t.Errorf("bob GET item %v: %d", q, code)
		}
		for _, action := range []string{"release", "delete", "allow", "block"} {
			form := url.Values{"csrf": {bob.csrf}, "id": q["id"], "rcpt": q["rcpt"], "action": {action}}
			if code, _, _ := bob.post("/quarantine/item", form); code != http.StatusNotFound {
				t.Errorf("bob POST %s %v: %d, want 404", action, q, code)
			}
		}
	}
	for _, p := range []string{"/admin/quarantine", "/admin/charts", "/admin/quarantine?q=secret"} {
		if code, body, _ := bob.get(p); code != http.StatusForbidden || strings.Contains(body, "secret-for") {
			t.Errorf("bob GET %s: %d, want 403", p, code)
		}
	}
	// Nothing changed: alice still has all three, and no list got an entry.
	alice := r.client()
	alice.login("alice@example.test")
	_, body, _ := alice.get("/quarantine")
	for _, want := range []string{"secret-for-alice", "secret-for-sales", "secret-for-both"} {
		if !strings.Contains(body, want) {
			t.Errorf("alice's quarantine lacks %s after bob's attempts", want)
		}
	}
	if e, _ := r.lists.Entries(context.Background(), "bob@example.test"); len(e) != 0 {
		t.Errorf("bob's list changed: %v", e)
	}
	// The admin sees everyone's in the admin view, and may act on it.
	admin := r.client()
	admin.login("admin@example.test")
	_, body, _ = admin.get("/admin/quarantine")
	for _, want := range []string{"secret-for-alice", "secret-for-sales", "secret-for-both"} {
		if !strings.Contains(body, want) {
			t.Errorf("admin view lacks %s", want)
		}
	}
	if code, _, _ := admin.get("/quarantine/item?" + url.Values{"id": {aliceID}, "rcpt": {"alice@example.test"}}.Encode()); code != 200 {
		t.Errorf("admin GET alice's item: %d", code)
	}
	if _, body, _ := admin.get("/quarantine"); strings.Contains(body, "secret-for") {
		t.Error("the admin's own quarantine view shows other users' mail")
	}
}

func TestReleaseThroughThePage(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("bank@bank.example", "statement", "sales@example.test")
	alice := r.client()
	alice.login("alice@example.test")
	code, _, h := alice.post("/quarantine/item", url.Values{"csrf": {alice.csrf}, "id": {id}, "rcpt": {"sales@example.test"}, "action": {"allow"}})
	if code != http.StatusSeeOther || h.Get("Location") != "/quarantine" {
		t.Fatalf("allow: %d %s", code, h.Get("Location"))
	}
	ids, _ := r.sp.List()
	if len(ids) != 1 || ids[0] == id {
		t.Fatalf("queue after release: %v, want one new message", ids)
	}
	env, _ := r.sp.Envelope(ids[0])
	if env.Quarantine || len(env.To) != 1 || env.To[0] != "sales@example.test" {
		t.Errorf("released copy %+v", env)
	}
	if kind, _ := r.lists.Lookup(context.Background(), "alice@example.test", "bank@bank.example"); kind != "allow" {
		t.Errorf("sender not on alice's allow list: %q", kind)
	}
	_, body, _ := alice.get(h.Get("Location"))
	if !strings.Contains(body, "bank@bank.example is now always allowed") {
		t.Errorf("no confirmation:\n%s", body)
	}
}

// Values from mail are shown as text everywhere: list, search, detail, admin view, charts.
func TestMailValuesEscaped(t *testing.T) {
	r := newRig(t)
	script := `<script>alert(1)</script>`
	img := `"><img src=x onerror=alert(2)>`
	id := r.quarantine(`a"><img@evil.test`, script+img, "alice@example.test")
	// A sender address itself carrying markup.
	r.quarantine("x@evil.test", "plain", "alice@example.test")

	admin := r.client()
	admin.login("admin@example.test")
	alice := r.client()
	alice.login("alice@example.test")
	pages := map[string]*client{
		"/quarantine":         alice,
		"/quarantine?q=alert": alice,
		"/quarantine/charts":  alice,
		"/admin/quarantine":   admin,
		"/admin/charts":       admin,
		"/quarantine/item?" + url.Values{"id": {id}, "rcpt": {"alice@example.test"}}.Encode(): alice,
	}
	for path, c := range pages {
		code, body, _ := c.get(path)
		if code != 200 {
			t.Errorf("GET %s: %d", path, code)
			continue
		}
		for _, raw := range []string{"<script>alert", "<img src=x", `"><img`} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: %q unescaped", path, raw)
			}
		}
		if path == "/quarantine/charts" || path == "/admin/charts" {
			if !strings.Contains(body, "&lt;svg") && !strings.Contains(body, "<svg") {
				t.Errorf("GET %s: no chart", path)
			}
			if !strings.Contains(body, `a&#34;&gt;&lt;img@evil.test`) {
				t.Errorf("GET %s: the sender is not in the top-senders chart as escaped text", path)
			}
			continue
		}
		if !strings.Contains(body, `&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;`) {
			t.Errorf("GET %s: the subject is not shown as escaped text:\n%s", path, body)
		}
	}
}

func TestTicketLogin(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "from-the-digest", "alice@example.test")
	good := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	c := r.client()
	code, body, _ := c.openTicket(good)
	if code != 200 || !strings.Contains(body, "from-the-digest") || !strings.Contains(body, `id="release"`) {
		t.Fatalf("good ticket: %d\n%s", code, body)
	}
	if code, _, _ := c.get("/quarantine"); code != 200 {
		t.Errorf("no session after the ticket: %d", code)
	}
	expired := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(-time.Second))
	payload, mac, _ := strings.Cut(good, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), "alice", "admin", 1))) + "." + mac
	other := r.ticket("bob@example.test", id, "bob@example.test", time.Now().Add(time.Hour))
	_, otherMAC, _ := strings.Cut(other, ".")
	for name, tk := range map[string]string{"expired": expired, "forged": forged, "empty": "", "swapped mac": payload + "." + otherMAC, "no mac": payload, "garbage": mac + "." + payload} {
		c := r.client()
		if code, body, _ := c.openTicket(tk); code != http.StatusForbidden || strings.Contains(body, "from-the-digest") {
			t.Errorf("%s ticket: %d", name, code)
		}
		if code, _, _ := c.get("/quarantine"); code != http.StatusSeeOther {
			t.Errorf("%s ticket opened a session", name)
		}
	}
	// A ticket for bob to alice's item opens bob's session but not alice's item.
	sneaky := r.ticket("bob@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	if code, body, _ := r.client().openTicket(sneaky); code != http.StatusNotFound || strings.Contains(body, "from-the-digest") {
		t.Errorf("bob's ticket to alice's item: %d", code)
	}
}

func TestLimits(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice@example.test")
	big := url.Values{"csrf": {c.csrf}, "action": {"allow"}, "sender": {strings.Repeat("a", 100<<10) + "@x.test"}}
	if code, _, _ := c.post("/senders", big); code != http.StatusBadRequest {
		t.Errorf("100 KiB form: %d, want 400", code)
	}
	r.srv.sessions.max = 2
	r.client().login("bob@example.test") // the second session
	x := r.client()
	x.get("/login")
	if code, _, _ := x.post("/login", url.Values{"csrf": {x.csrf}, "username": {"admin@example.test"}, "password": {pw}}); code != http.StatusServiceUnavailable {
		t.Errorf("login beyond max_sessions: %d, want 503", code)
	}
}

// A due digest lists the user's new quarantined mail, only theirs, with links that log in
// to each item.
func TestDigest(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.srv.cfg.URL = r.ts.URL
	if err := r.lists.SetDigest(ctx, "alice@example.test", "daily"); err != nil {
		t.Fatal(err)
	}
	r.quarantine("x@spam.test", "for-alice-digest", "alice@example.test")
	r.quarantine("y@spam.test", "for-bob-only", "bob@example.test")
	var queued []string
	dc := DigestConfig{Lists: r.lists, From: "postmaster@example.test", Enqueue: func(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error) {
		b, _ := io.ReadAll(msg)
		if len(env.To) != 1 || env.To[0] != "alice@example.test" {
			t.Errorf("digest to %v", env.To)
		}
		queued = append(queued, string(b))
		return "x", nil
	}}
	if n, err := r.srv.SendDigests(ctx, dc, time.Now()); err != nil || n != 0 {
		t.Fatalf("digest before a day passed: %d, %v", n, err)
	}
	n, err := r.srv.SendDigests(ctx, dc, time.Now().Add(25*time.Hour))
	if err != nil || n != 1 || len(queued) != 1 {
		t.Fatalf("due digest: %d, %v", n, err)
	}
	d := queued[0]
	if !strings.Contains(d, "for-alice-digest") || strings.Contains(d, "for-bob-only") {
		t.Fatalf("digest:\n%s", d)
	}
	link := regexp.MustCompile(`(?m)^  (http://\S+/ticket\?t=\S+)\r$`).FindStringSubmatch(d)
	if link == nil {
		t.Fatalf("no ticket link in the digest:\n%s", d)
	}
	c := r.client()
	tk := link[1][strings.Index(link[1], "?t=")+3:]
	if code, body, _ := c.openTicket(tk); code != 200 || !strings.Contains(body, "for-alice-digest") {
		t.Errorf("digest link: %d", code)
	}
	if n, _ := r.srv.SendDigests(ctx, dc, time.Now().Add(26*time.Hour)); n != 0 {
		t.Errorf("a second digest an hour later: %d", n)
	}
}

func TestQuarantineSortAndPages(t *testing.T) {
	r := newRig(t)
	for i := range 60 {
		r.quarantine(fmt.Sprintf("s%02d@x.test", i), fmt.Sprintf("subject-%02d", i), "alice@example.test")
	}
	c := r.client()
	c.login("alice@example.test")
	_, body, _ := c.get("/quarantine?sort=from")
	if i, j := strings.Index(body, "s00@x.test"), strings.Index(body, "s01@x.test"); i < 0 || j < i || strings.Contains(body, "s55@x.test") {
		t.Errorf("sort by sender, first page: s00 at %d, s01 at %d", i, j)
	}
	if !strings.Contains(body, "page 1 of 2") || !strings.Contains(body, "sort=from") {
		t.Error("no second page link keeping the order")
	}
	_, body, _ = c.get("/quarantine?sort=from&page=2")
	if !strings.Contains(body, "s55@x.test") || strings.Contains(body, "s00@x.test") {
		t.Error("second page")
	}
}
