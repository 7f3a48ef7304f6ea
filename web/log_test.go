package web

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// logRig fills the log with mail to alice, to her alias, to bob, her own submission and a
// refused connection.
func logRig(t *testing.T) (r *rig, ids map[string]int64) {
	return fillLog(newRig(t))
}

func fillLog(r *rig) (*rig, map[string]int64) {
	t := r.t
	t.Helper()
	ip := netip.MustParseAddr("203.0.113.9")
	ids := map[string]int64{}
	add := func(name string, rec decisionlog.Record) {
		if rec.ClientIP == (netip.Addr{}) {
			rec.ClientIP = ip
		}
		ids[name] = r.record(rec)
	}
	add("alice", decisionlog.Record{Listener: "mx", Sender: "x@spam.test", Recipient: "alice@example.test",
		Subject: `secret-alice <script>alert(1)</script>"><img src=x onerror=alert(2)>`, MessageID: "a1@spam.test",
		Stage: "rcpt", Verdict: "reject", Reply: "554 5.7.1 listed", Rule: "zen", Category: "RBL", Score: 3,
		Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "rcpt", Status: "fail", Reason: `rbl.listed <b>x</b>`}}})
	add("sales", decisionlog.Record{Listener: "mx", Sender: `"><img src=x onerror=alert(3)>@evil.test`, Recipient: "sales@example.test",
		Subject: "secret-sales", Stage: "data", Verdict: "quarantine", Rule: "bayes", Category: "Spam", Score: 9})
	add("bob", decisionlog.Record{Listener: "mx", Sender: "y@bank.example", Recipient: "bob@example.test",
		Subject: "secret-bob", MessageID: "b1@bank.example", Stage: "data", Verdict: "accept", QueueID: "Q1", Outcome: "delivered"})
	add("sent", decisionlog.Record{Listener: "submission", AuthUser: "alice@example.test", Sender: "alice@example.test",
		Recipient: "friend@far.example", Subject: "secret-sent", Stage: "data", Verdict: "accept", QueueID: "Q2", Outcome: "deferred"})
	add("conn", decisionlog.Record{Listener: "mx", Stage: "connect", Verdict: "reject", Rule: "zen", Category: "RBL",
		ClientIP: netip.MustParseAddr("198.51.100.1"), Reply: "554 secret-conn"})
	return r, ids
}

func TestLogScope(t *testing.T) {
	r, ids := logRig(t)
	checkLogScope(t, r, ids)
}

// The same scope over the log in a real PostgreSQL server (several front-end nodes share
// one log there).
func TestLogScopePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	r, ids := fillLog(newRigLog(t, decisionlog.Config{Postgres: dsn}))
	checkLogScope(t, r, ids)
}

func checkLogScope(t *testing.T, r *rig, ids map[string]int64) {
	t.Helper()
	alice := r.client()
	alice.login("alice@example.test")
	bob := r.client()
	bob.login("bob@example.test")
	admin := r.client()
	admin.login("admin@example.test")

	_, body, _ := alice.get("/log")
	for _, want := range []string{"secret-alice", "secret-sales", "secret-sent"} {
		if !strings.Contains(body, want) {
			t.Errorf("alice's log lacks %s", want)
		}
	}
	for _, not := range []string{"secret-bob", "secret-conn"} {
		if strings.Contains(body, not) {
			t.Errorf("alice's log shows %s", not)
		}
	}
	// bob, by search, by id, by charts: nothing of alice's.
	for _, q := range []string{"", "?address=alice@example.test", "?address=example.test", "?subject=secret", "?msgid=a1@spam.test",
		"?client=203.0.113.0/24", "?verdict=reject", "?category=RBL", "?rule=zen", "?policy=zen", "?sort=score"} {
		code, body, _ := bob.get("/log" + q)
		if code != 200 {
			t.Errorf("bob GET /log%s: %d", q, code)
		}
		for _, leak := range []string{"secret-alice", "secret-sales", "secret-sent", "secret-conn", "spam.test"} {
			if strings.Contains(body, leak) && !strings.Contains(q, leak) {
				t.Errorf("bob GET /log%s shows %s", q, leak)
			}
		}
	}
	for _, name := range []string{"alice", "sales", "sent", "conn"} {
		code, body, _ := bob.get(fmt.Sprint("/log/", ids[name]))
		if code != http.StatusNotFound || strings.Contains(body, "secret") {
			t.Errorf("bob GET %s's record: %d", name, code)
		}
	}
	for _, p := range []string{"/log/0", "/log/-1", "/log/99999", "/log/abc", "/log/1%20OR%201=1"} {
		if code, _, _ := bob.get(p); code != http.StatusNotFound {
			t.Errorf("bob GET %s: %d", p, code)
		}
	}
	if code, body, _ := bob.get(fmt.Sprint("/log/", ids["bob"])); code != 200 || !strings.Contains(body, "secret-bob") {
		t.Errorf("bob's own record: %d", code)
	}
	if _, body, _ := bob.get("/charts"); strings.Contains(body, "spam.test") || strings.Contains(body, "evil.test") {
		t.Error("bob's charts show alice's senders")
	}
	// The admin sees all, connections included, and the site's charts.
	if code, body, _ := admin.get("/charts"); code != 200 || !strings.Contains(body, "spam.test") || strings.Count(body, `class="bar s`) < 3 {
		t.Errorf("admin charts: %d", code)
	}
	_, body, _ = admin.get("/log")
	for _, want := range []string{"secret-alice", "secret-sales", "secret-bob", "secret-sent", "198.51.100.1"} {
		if !strings.Contains(body, want) {
			t.Errorf("admin's log lacks %s", want)
		}
	}
	if code, body, _ := admin.get(fmt.Sprint("/log/", ids["alice"])); code != 200 || !strings.Contains(body, "554 5.7.1 listed") {
		t.Errorf("admin GET alice's record: %d", code)
	}
	// Filters narrow.
	_, body, _ = admin.get("/log?" + url.Values{"category": {"Spam"}}.Encode())
	if !strings.Contains(body, "secret-sales") || strings.Contains(body, "secret-alice") {
		t.Errorf("category filter:\n%s", body)
	}
	_, body, _ = admin.get("/log?verdict=blocked&address=bank.example")
	if !strings.Contains(body, "No decisions match") {
		t.Error("verdict=blocked&address=bank.example matched the accepted message")
	}
	if code, body, _ := admin.get("/log?client=" + url.QueryEscape("<script>")); code != http.StatusBadRequest || strings.Contains(body, "<script>") {
		t.Errorf("bad client filter: %d", code)
	}
	if code, _, _ := admin.get("/log?verdict=bogus"); code != http.StatusBadRequest {
		t.Errorf("bad verdict: %d", code)
	}
}

func TestLogEscaped(t *testing.T) {
	r, ids := logRig(t)
	alice := r.client()
	alice.login("alice@example.test")
	for _, p := range []string{"/log", "/log?subject=script", fmt.Sprint("/log/", ids["alice"]), fmt.Sprint("/log/", ids["sales"]), "/charts"} {
		code, body, _ := alice.get(p)
		if code != 200 {
			t.Fatalf("GET %s: %d", p, code)
		}
		for _, raw := range []string{"<script>alert", "<img src=x", "<b>x</b>"} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: %q unescaped", p, raw)
			}
		}
	}
	_, body, _ := alice.get(fmt.Sprint("/log/", ids["alice"]))
	for _, want := range []string{`&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;`, `rbl.listed &lt;b&gt;x&lt;/b&gt;`} {
		if !strings.Contains(body, want) {
			t.Errorf("record page lacks %s", want)
		}
	}
	_, body, _ = alice.get("/charts")
	if !strings.Contains(body, `&#34;&gt;&lt;img src=x onerror=alert(3)&gt;@evil.test`) {
		t.Error("the top-senders chart lacks the escaped sender")
	}
	if n := strings.Count(body, `class="bar s`); n < 3 {
		t.Errorf("charts: %d bars", n)
	}
}

var nextRE = regexp.MustCompile(`<a href="([^"]+)">next page`)

func TestLogPagination(t *testing.T) {
	r := newRig(t)
	for i := range 120 {
		r.log.Add(decisionlog.Record{Listener: "mx", Sender: "s@x.test", Recipient: "alice@example.test",
			Subject: fmt.Sprintf("msg-%03d", i), Stage: "data", Verdict: "accept"})
	}
	if err := r.log.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	c.login("alice@example.test")
	seen := map[string]bool{}
	next := "/log?sort=oldest"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		_, body, _ := c.get(next)
		for i := range 120 {
			if s := fmt.Sprintf("msg-%03d", i); strings.Contains(body, s) {
				if seen[s] {
					t.Errorf("%s on two pages", s)
				}
				seen[s] = true
			}
		}
		next = ""
		if m := nextRE.FindStringSubmatch(body); m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != 120 {
		t.Errorf("pages showed %d of 120 records", len(seen))
	}
}

// The admin's top lists over days with more blocked senders than the daily counters
// keep say that they are approximate, and by how much.
func TestChartsApproximateTop(t *testing.T) {
	ctx := context.Background()
	l, err := decisionlog.Open(ctx, decisionlog.Config{Path: filepath.Join(t.TempDir(), "d.db"), Retention: -1}, decisionlog.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Now().UTC()
	for d := range 2 {
		for i := range 260 {
			l.Add(decisionlog.Record{Time: now.Add(-time.Duration(d*24+1) * time.Hour), Sender: fmt.Sprintf("s@d%d-%d.spam.test", d, i),
				Recipient: "bob@example.org", ClientIP: netip.AddrFrom4([4]byte{10, 0, byte(d), byte(i)}), Verdict: "reject", Category: "RBL"})
		}
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s := &Server{deps: Deps{Log: l}, now: time.Now}
	text := func() string {
		charts, err := s.logFigures(ctx, decisionlog.Scope{All: true}, now)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(charts)
	}
	if strings.Contains(text(), "approximate") {
		t.Fatal("exact lists labelled approximate")
	}
	if err := l.Optimize(ctx); err != nil { // trims the days to their largest keys
		t.Fatal(err)
	}
	body := text()
	// three lists, each title written three times (aria-label, <title>, the text)
	if n := strings.Count(body, "approximate: counts may be low by up to 2"); n != 9 {
		t.Fatalf("%d labels of approximate lists, want 3 lists × 3", n)
	}
}
