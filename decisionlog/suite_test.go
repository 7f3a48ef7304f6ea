package decisionlog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// opener opens a fresh, empty decision log for one test. hold blocks the store's
// writers (another session takes the write lock) until release is called.
type opener func(t *testing.T, cfg decisionlog.Config, deps decisionlog.Deps) (l *decisionlog.Log, hold func() (release func()))

func sqliteOpener(t *testing.T, cfg decisionlog.Config, deps decisionlog.Deps) (*decisionlog.Log, func() func()) {
	t.Helper()
	cfg.Path = filepath.Join(t.TempDir(), "decisions.db")
	l, err := decisionlog.Open(context.Background(), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	hold := func() func() {
		db, err := sql.Open("sqlite", "file:"+cfg.Path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		c, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		return func() {
			c.ExecContext(context.Background(), "ROLLBACK")
			c.Close()
			db.Close()
		}
	}
	return l, hold
}

func TestSQLite(t *testing.T) { runSuite(t, sqliteOpener) }

var day0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a Monday

func flush(t *testing.T, l *decisionlog.Log) {
	t.Helper()
	// A bound against a hung writer, not a speed target: a full CI run beside disk-heavy
	// benchmarks once took over 30 s to write 4,100 records here.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func query(t *testing.T, l *decisionlog.Log, f decisionlog.Filter) []decisionlog.Record {
	t.Helper()
	if !f.Scope.All && f.Scope.Recipients == nil && f.Scope.AuthUser == "" {
		f.Scope.All = true
	}
	var all []decisionlog.Record
	for {
		page, next, err := l.Query(context.Background(), f)
		if err != nil {
			t.Fatalf("query %+v: %v", f, err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		f.Cursor = next
	}
}

func ids(recs []decisionlog.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// fixture writes a small, varied set of records and returns them with their ids.
func fixture(t *testing.T, l *decisionlog.Log) map[string]decisionlog.Record {
	t.Helper()
	recs := map[string]decisionlog.Record{
		"bank": {Time: day0.Add(9 * time.Hour), Session: "s1", Txn: "s1.1", Listener: "mx", ClientIP: netip.MustParseAddr("192.0.2.10"),
			ClientName: "mail.bank.example", HELO: "mail.bank.example", Sender: "Alerts@Bank.Example", Recipient: "alice@example.org",
			From: "alerts@bank.example", Subject: "Your statement is ready", MessageID: "<s1@bank.example>", Size: 4000,
			Stage: "data", Verdict: "accept", Reply: "250 2.0.0 OK queued as Q1", Score: -1.5,
			Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "connect", Status: "none"}, {Name: "spf", Stage: "mail", Status: "pass", Reason: "spf.pass"}},
			Tags:     []string{"trusted"}, QueueID: "Q1"},
		"spam": {Time: day0.Add(10 * time.Hour), Session: "s2", Listener: "mx", ClientIP: netip.MustParseAddr("198.51.100.7"),
			HELO: "x", Sender: "win@lottery.test", Recipient: "alice@example.org", Subject: "100% FREE money_now",
			Stage: "rcpt", Verdict: "reject", Reply: "554 5.7.1 listed", Rule: "zen", Category: "RBL", Score: 5,
			Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "connect", Status: "fail", Reason: "rbl.listed", Score: 1}}},
		"virus": {Time: day0.Add(24*time.Hour + time.Hour), Session: "s3", Listener: "mx", ClientIP: netip.MustParseAddr("2001:db8::5"),
			Sender: "a@evil.test", Recipient: "bob@example.org", Subject: "invoice", MessageID: "v@evil.test", Size: 90000,
			Stage: "data", Verdict: "reject", Reply: "554 5.7.1 virus", Rule: "virus", Category: "Virus", Score: 12.25,
			Policies: []decisionlog.PolicyResult{{Name: "clam", Stage: "data", Status: "fail", Reason: "virus.found"}}},
		"sent": {Time: day0.Add(8*24*time.Hour + 2*time.Hour), Session: "s4", Listener: "submission", ClientIP: netip.MustParseAddr("203.0.113.9"),
			AuthUser: "alice@example.org", Sender: "alice@example.org", Recipient: "carol@far.test", Subject: "lunch?",
			Stage: "data", Verdict: "accept", Reply: "250 2.0.0 OK queued as Q2", QueueID: "Q2", Size: 1200},
		"conn": {Time: day0.Add(8*24*time.Hour + 3*time.Hour), Session: "s5", Listener: "mx", ClientIP: netip.MustParseAddr("198.51.100.99"),
			Stage: "connect", Verdict: "reject", Reply: "554 5.7.1 go away", Rule: "zen", Category: "RBL"},
		"forged": {Time: day0.Add(8*24*time.Hour + 4*time.Hour), Session: "s6", Listener: "mx", ClientIP: netip.MustParseAddr("198.51.100.50"),
			Sender: "alice@example.org", Recipient: "bob@example.org", Subject: "forged",
			Stage: "data", Verdict: "quarantine", Reply: "250 2.0.0 OK queued as Q3", Rule: "spoof", Category: "Spoof", QueueID: "Q3", Score: 3},
	}
	for _, k := range []string{"bank", "spam", "virus", "sent", "conn", "forged"} {
		l.Add(recs[k])
	}
	flush(t, l)
	all := query(t, l, decisionlog.Filter{Sort: decisionlog.SortOldest})
	if len(all) != len(recs) {
		t.Fatalf("wrote %d records, read %d", len(recs), len(all))
	}
	for _, r := range all {
		for k, w := range recs {
			if w.Session == r.Session {
				w.ID = r.ID
				recs[k] = w
			}
		}
	}
	return recs
}

func runSuite(t *testing.T, open opener) {
	t.Run("RoundTrip", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{}, decisionlog.Deps{})
		recs := fixture(t, l)
		got, err := l.Get(context.Background(), decisionlog.Scope{All: true}, recs["bank"].ID)
		if err != nil {
			t.Fatal(err)
		}
		want := recs["bank"]
		want.Sender = "alerts@bank.example" // stored lower-cased
		want.MessageID = "s1@bank.example"  // without brackets
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Fatalf("Get:\n got %+v\nwant %+v", got, want)
		}
		v, err := l.Get(context.Background(), decisionlog.Scope{All: true}, recs["virus"].ID)
		if err != nil || v.ClientIP != netip.MustParseAddr("2001:db8::5") || v.Score != 12.25 {
			t.Fatalf("virus record: %+v %v", v, err)
		}
		c, err := l.Get(context.Background(), decisionlog.Scope{All: true}, recs["conn"].ID)
		if err != nil || c.Recipient != "" || c.Stage != "connect" || c.Category != "RBL" {
			t.Fatalf("connection record: %+v %v", c, err)
		}
	})

	t.Run("Scope", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{}, decisionlog.Deps{})
		recs := fixture(t, l)
		ctx := context.Background()
		if page, _, err := l.Query(ctx, decisionlog.Filter{}); err != nil || len(page) != 0 {
			t.Fatalf("zero scope saw %d records (%v)", len(page), err)
		}
		if _, err := l.Get(ctx, decisionlog.Scope{}, recs["bank"].ID); !errors.Is(err, decisionlog.ErrNotFound) {
			t.Fatalf("zero scope Get: %v", err)
		}
		alice := decisionlog.Scope{Recipients: []string{"Alice@Example.org"}, AuthUser: "alice@example.org"}
		got := query(t, l, decisionlog.Filter{Scope: alice, Sort: decisionlog.SortOldest})
		// her inbound mail and what she submitted; not the forgery in her name sent to bob
		if want := []int64{recs["bank"].ID, recs["spam"].ID, recs["sent"].ID}; !slices.Equal(ids(got), want) {
			t.Fatalf("alice sees %v, want %v", ids(got), want)
		}
		if _, err := l.Get(ctx, alice, recs["virus"].ID); !errors.Is(err, decisionlog.ErrNotFound) {
			t.Fatalf("alice got bob's record: %v", err)
		}
		if _, err := l.Get(ctx, alice, recs["sent"].ID); err != nil {
			t.Fatalf("alice cannot get her sent mail: %v", err)
		}
		// a filter cannot widen the scope
		got = query(t, l, decisionlog.Filter{Scope: alice, Recipient: "bob@example.org"})
		if len(got) != 0 {
			t.Fatalf("alice's filter by bob sees %v", ids(got))
		}
		if _, err := l.Get(ctx, decisionlog.Scope{All: true}, 1<<40); !errors.Is(err, decisionlog.ErrNotFound) {
			t.Fatalf("missing id: %v", err)
		}
		// more aliases than SQLite allows variables in a statement (32,766)
		many := decisionlog.Scope{AuthUser: "nobody@example.org"}
		for i := range 40000 {
			many.Recipients = append(many.Recipients, fmt.Sprintf("alias%d@example.org", i))
		}
		many.Recipients = append(many.Recipients, "ALICE@example.org")
		got = query(t, l, decisionlog.Filter{Scope: many, Sort: decisionlog.SortOldest})
		if want := []int64{recs["bank"].ID, recs["spam"].ID}; !slices.Equal(ids(got), want) {
			t.Fatalf("40,001 aliases see %v, want %v", ids(got), want)
		}
		if _, err := l.Get(ctx, many, recs["bank"].ID); err != nil {
			t.Fatalf("40,001 aliases Get: %v", err)
		}
		cc, err := l.BlockedByCategory(ctx, decisionlog.Filter{Scope: many}, decisionlog.Day)
		if err != nil || len(cc) == 0 {
			t.Fatalf("40,001 aliases chart: %v %v", cc, err)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{}, decisionlog.Deps{})
		recs := fixture(t, l)
		cases := []struct {
			f    decisionlog.Filter
			want []string
		}{
			{decisionlog.Filter{Address: "alice@example.org"}, []string{"bank", "spam", "sent", "forged"}},
			{decisionlog.Filter{Address: "bank.example"}, []string{"bank"}},
			{decisionlog.Filter{Address: "@EXAMPLE.ORG"}, []string{"bank", "spam", "virus", "sent", "forged"}},
			{decisionlog.Filter{Sender: "alice@example.org"}, []string{"sent", "forged"}},
			{decisionlog.Filter{Recipient: "far.test"}, []string{"sent"}},
			{decisionlog.Filter{Client: "198.51.100.0/24"}, []string{"spam", "conn", "forged"}},
			{decisionlog.Filter{Client: "198.51.100.7"}, []string{"spam"}},
			{decisionlog.Filter{Client: "2001:db8::/32"}, []string{"virus"}},
			{decisionlog.Filter{Client: "::ffff:192.0.2.10"}, []string{"bank"}}, // the v4-mapped form is the same address
			{decisionlog.Filter{Subject: "STATEMENT ready"}, []string{"bank"}},
			{decisionlog.Filter{Subject: "100%"}, []string{"spam"}},
			{decisionlog.Filter{Subject: "0%"}, []string{"spam"}},
			{decisionlog.Filter{Subject: "y_n"}, []string{"spam"}}, // money_now; _ is no wildcard
			{decisionlog.Filter{Subject: "%"}, []string{"spam"}},
			{decisionlog.Filter{MessageID: "<v@evil.test>"}, []string{"virus"}},
			{decisionlog.Filter{MessageID: "s1@bank.example"}, []string{"bank"}},
			{decisionlog.Filter{QueueID: "Q2"}, []string{"sent"}},
			{decisionlog.Filter{Verdicts: []string{"reject"}}, []string{"spam", "virus", "conn"}},
			{decisionlog.Filter{Blocked: true}, []string{"spam", "virus", "conn", "forged"}},
			{decisionlog.Filter{Categories: []string{"RBL", "Virus"}}, []string{"spam", "virus", "conn"}},
			{decisionlog.Filter{Rule: "zen"}, []string{"spam", "conn"}},
			{decisionlog.Filter{Policy: "zen"}, []string{"spam"}}, // failed; "none" in bank does not count
			{decisionlog.Filter{Policy: "spf"}, nil},
			{decisionlog.Filter{Stages: []string{"connect"}}, []string{"conn"}},
			{decisionlog.Filter{Connections: true}, []string{"conn"}},
			{decisionlog.Filter{Listener: "submission"}, []string{"sent"}},
			{decisionlog.Filter{AuthUser: "alice@example.org"}, []string{"sent"}},
			{decisionlog.Filter{Since: day0.Add(24 * time.Hour), Until: day0.Add(8*24*time.Hour + 3*time.Hour)}, []string{"virus", "sent"}},
			{decisionlog.Filter{MinScore: new(5.0)}, []string{"spam", "virus"}},
			{decisionlog.Filter{Outcomes: []string{"none"}, Verdicts: []string{"accept"}}, []string{"bank", "sent"}},
		}
		for _, c := range cases {
			c.f.Sort = decisionlog.SortOldest
			var want []int64
			for _, k := range c.want {
				want = append(want, recs[k].ID)
			}
			if got := ids(query(t, l, c.f)); !slices.Equal(got, want) {
				t.Errorf("filter %+v: got %v, want %v (%v)", c.f, got, want, c.want)
			}
		}
		if _, _, err := l.Query(context.Background(), decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Client: "not-an-ip"}); !errors.Is(err, decisionlog.ErrBadFilter) {
			t.Errorf("bad client: %v", err)
		}
		if _, _, err := l.Query(context.Background(), decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Cursor: "!!"}); !errors.Is(err, decisionlog.ErrBadFilter) {
			t.Errorf("bad cursor: %v", err)
		}
		// Every Subject word is a scan; a search carries a bounded number of them.
		many := strings.Repeat("w ", decisionlog.MaxSubjectWords+1)
		if _, _, err := l.Query(context.Background(), decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Subject: many}); !errors.Is(err, decisionlog.ErrBadFilter) {
			t.Errorf("%d Subject words: %v", decisionlog.MaxSubjectWords+1, err)
		}
		for _, width := range []float64{math.NaN(), math.Inf(1), -1, 1e-9} {
			if _, err := l.ScoreHistogram(context.Background(), decisionlog.Filter{Scope: decisionlog.Scope{All: true}}, width); !errors.Is(err, decisionlog.ErrBadFilter) {
				t.Errorf("histogram width %v: %v", width, err)
			}
		}
	})

	t.Run("Pages", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{}, decisionlog.Deps{})
		for i := range 125 {
			// pairs share a timestamp and triples a score, so the id breaks ties
			l.Add(decisionlog.Record{Time: day0.Add(time.Duration(i/2) * time.Minute), Recipient: fmt.Sprintf("u%d@example.org", i),
				Verdict: "accept", Score: float64(i % 3), Size: int64(i), Session: fmt.Sprint(i)})
		}
		flush(t, l)
		for _, s := range []decisionlog.Sort{decisionlog.SortNewest, decisionlog.SortOldest, decisionlog.SortScoreHigh,
			decisionlog.SortScoreLow, decisionlog.SortSizeLarge, decisionlog.SortSizeSmall} {
			f := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Sort: s, Limit: 50}
			var all []decisionlog.Record
			pages := 0
			for {
				page, next, err := l.Query(context.Background(), f)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				all = append(all, page...)
				if next == "" {
					break
				}
				f.Cursor = next
			}
			if pages != 3 || len(all) != 125 {
				t.Fatalf("sort %d: %d pages, %d records", s, pages, len(all))
			}
			seen := map[int64]bool{}
			for i, r := range all {
				if seen[r.ID] {
					t.Fatalf("sort %d: record %d twice", s, r.ID)
				}
				seen[r.ID] = true
				if i == 0 {
					continue
				}
				p := all[i-1]
				var ok bool
				switch s {
				case decisionlog.SortNewest:
					ok = p.Time.After(r.Time) || p.Time.Equal(r.Time) && p.ID > r.ID
				case decisionlog.SortOldest:
					ok = p.Time.Before(r.Time) || p.Time.Equal(r.Time) && p.ID < r.ID
				case decisionlog.SortScoreHigh:
					ok = p.Score > r.Score || p.Score == r.Score && p.ID > r.ID
				case decisionlog.SortScoreLow:
					ok = p.Score < r.Score || p.Score == r.Score && p.ID < r.ID
				case decisionlog.SortSizeLarge:
					ok = p.Size > r.Size
				case decisionlog.SortSizeSmall:
					ok = p.Size < r.Size
				}
				if !ok {
					t.Fatalf("sort %d: %+v before %+v", s, p, r)
				}
			}
		}
		// a cursor belongs to its search: another sort, filter or scope refuses it
		f := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Limit: 10}
		_, next, err := l.Query(context.Background(), f)
		if err != nil || next == "" {
			t.Fatalf("first page: %q %v", next, err)
		}
		f.Cursor = next
		f.Limit = 20 // another page size is the same search
		if _, _, err := l.Query(context.Background(), f); err != nil {
			t.Fatalf("next page: %v", err)
		}
		for name, g := range map[string]decisionlog.Filter{
			"sort":   {Scope: decisionlog.Scope{All: true}, Sort: decisionlog.SortOldest},
			"filter": {Scope: decisionlog.Scope{All: true}, Verdicts: []string{"accept"}},
			"scope":  {Scope: decisionlog.Scope{Recipients: []string{"u7@example.org"}}},
			"time":   {Scope: decisionlog.Scope{All: true}, Since: day0},
		} {
			g.Cursor = next
			if _, _, err := l.Query(context.Background(), g); !errors.Is(err, decisionlog.ErrBadFilter) {
				t.Errorf("cursor of another %s: %v", name, err)
			}
		}
	})

	t.Run("Outcome", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{}, decisionlog.Deps{})
		// the delivery can report before smtpd hands over the record
		l.SetOutcome(decisionlog.Outcome{QueueID: "Q9", Recipient: "Bob@example.org", Outcome: "deferred", Time: day0.Add(time.Second)})
		l.SetOutcome(decisionlog.Outcome{QueueID: "Q9", Recipient: "Bob@example.org", Outcome: "delivered", Relay: "local", DSN: "2.0.0", Time: day0.Add(time.Minute)})
		flush(t, l)
		l.Add(decisionlog.Record{Time: day0, QueueID: "Q9", Recipient: "bob@example.org", Verdict: "accept"})
		l.Add(decisionlog.Record{Time: day0, QueueID: "Q9", Recipient: "carol@example.org", Verdict: "accept"})
		l.SetOutcome(decisionlog.Outcome{QueueID: "Q9", Recipient: "carol@example.org", Outcome: "deferred", Reason: "451 4.3.0 busy", DSN: "4.3.0"})
		flush(t, l)
		got := query(t, l, decisionlog.Filter{QueueID: "Q9", Sort: decisionlog.SortOldest})
		if len(got) != 2 || got[0].Outcome != "delivered" || got[0].Relay != "local" || !got[0].OutcomeTime.Equal(day0.Add(time.Minute)) || got[0].Deferrals != 1 ||
			got[1].Outcome != "deferred" || got[1].OutcomeReason != "451 4.3.0 busy" {
			t.Fatalf("outcomes: %+v", got)
		}
		l.SetOutcome(decisionlog.Outcome{QueueID: "Q9", Recipient: "carol@example.org", Outcome: "bounced", Reason: "550 5.1.1 gone", DSN: "5.1.1"})
		flush(t, l)
		got = query(t, l, decisionlog.Filter{Outcomes: []string{"bounced"}})
		if len(got) != 1 || got[0].Recipient != "carol@example.org" || got[0].DSN != "5.1.1" || got[0].Deferrals != 1 {
			t.Fatalf("bounce: %+v", got)
		}
	})

	t.Run("Aggregates", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{}, decisionlog.Deps{})
		recs := fixture(t, l)
		_ = recs
		ctx := context.Background()
		all := decisionlog.Filter{Scope: decisionlog.Scope{All: true}}
		cc, err := l.BlockedByCategory(ctx, all, decisionlog.Day)
		if err != nil {
			t.Fatal(err)
		}
		want := []decisionlog.CategoryCount{
			{Start: day0, Category: "RBL", Count: 1},
			{Start: day0.Add(24 * time.Hour), Category: "Virus", Count: 1},
			{Start: day0.Add(8 * 24 * time.Hour), Category: "RBL", Count: 1},
			{Start: day0.Add(8 * 24 * time.Hour), Category: "Spoof", Count: 1},
		}
		if fmt.Sprint(cc) != fmt.Sprint(want) {
			t.Fatalf("by day:\n got %v\nwant %v", cc, want)
		}
		cc, err = l.BlockedByCategory(ctx, all, decisionlog.Week)
		if err != nil {
			t.Fatal(err)
		}
		want = []decisionlog.CategoryCount{
			{Start: day0, Category: "RBL", Count: 1}, {Start: day0, Category: "Virus", Count: 1},
			{Start: day0.Add(7 * 24 * time.Hour), Category: "RBL", Count: 1}, {Start: day0.Add(7 * 24 * time.Hour), Category: "Spoof", Count: 1},
		}
		if fmt.Sprint(cc) != fmt.Sprint(want) {
			t.Fatalf("by week:\n got %v\nwant %v", cc, want)
		}
		tr, err := l.Traffic(ctx, all, decisionlog.Day)
		if err != nil {
			t.Fatal(err)
		}
		wantT := []decisionlog.TrafficRow{
			{Start: day0, Received: 2, Accepted: 1, Rejected: 1, Bytes: 4000},
			{Start: day0.Add(24 * time.Hour), Received: 1, Rejected: 1},
			{Start: day0.Add(8 * 24 * time.Hour), Received: 2, Accepted: 1, Quarantined: 1, Connections: 1, Bytes: 1200},
		}
		if fmt.Sprint(tr) != fmt.Sprint(wantT) {
			t.Fatalf("traffic:\n got %+v\nwant %+v", tr, wantT)
		}
		tr, err = l.Traffic(ctx, all, decisionlog.Hour)
		if err != nil || len(tr) != 6 || !tr[0].Start.Equal(day0.Add(9*time.Hour)) {
			t.Fatalf("traffic by hour: %+v %v", tr, err)
		}
		h, err := l.ScoreHistogram(ctx, all, 2)
		if err != nil {
			t.Fatal(err)
		}
		// -1.5 → [-2,0); 0 (sent) → [0,2); 5 → [4,6); 12.25 → [12,14); 3 → [2,4)
		if want := "[{-2 1} {0 1} {2 1} {4 1} {12 1}]"; fmt.Sprint(h) != want {
			t.Fatalf("histogram %v, want %v", h, want)
		}
		blocked := all
		blocked.Blocked = true
		top, err := l.Top(ctx, blocked, decisionlog.TopCategory, 2, false)
		if err != nil || fmt.Sprint(top) != "[{RBL 2 0 0} {Spoof 1 0 0}]" {
			t.Fatalf("top categories %v %v", top, err)
		}
		top, err = l.Top(ctx, blocked, decisionlog.TopClient, 1, false)
		if err != nil || len(top) != 1 || top[0].Key == "" {
			t.Fatalf("top clients %v %v", top, err)
		}
		top, err = l.Top(ctx, all, decisionlog.TopRecipientDomain, 5, true)
		if err != nil || fmt.Sprint(top) != "[{example.org 4 94000 0} {far.test 1 1200 0} { 1 0 0}]" {
			t.Fatalf("top recipient domains by size %v %v", top, err)
		}
		// a user's charts count only their records
		alice := decisionlog.Filter{Scope: decisionlog.Scope{Recipients: []string{"alice@example.org"}}}
		cc, err = l.BlockedByCategory(ctx, alice, decisionlog.Week)
		if err != nil || fmt.Sprint(cc) != fmt.Sprint([]decisionlog.CategoryCount{{Start: day0, Category: "RBL", Count: 1}}) {
			t.Fatalf("alice's chart %v %v", cc, err)
		}
	})

	t.Run("Rollups", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{Retention: -1}, decisionlog.Deps{})
		rollupCheck(t, l)
	})

	t.Run("TopCapped", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{Retention: -1}, decisionlog.Deps{})
		topCapCheck(t, l)
	})

	t.Run("DailyCounters", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{Retention: -1}, decisionlog.Deps{})
		daysCheck(t, l)
	})

	t.Run("RollupsBuild", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{Retention: -1}, decisionlog.Deps{})
		buildCheck(t, l)
	})

	t.Run("Prune", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{}, decisionlog.Deps{})
		now := time.Now()
		for i := range 4100 {
			l.Add(decisionlog.Record{Time: now.Add(-time.Duration(i) * time.Minute), Recipient: "a@b.example", Verdict: "accept"})
		}
		flush(t, l)
		n, err := l.Prune(context.Background(), now.Add(-1000*time.Minute))
		// records 1001..4099 minutes old; the one exactly 1000 minutes old stays
		if err != nil || n != 3099 {
			t.Fatalf("pruned %d (%v), want 3099", n, err)
		}
		if got := len(query(t, l, decisionlog.Filter{Limit: 1000})); got != 1001 {
			t.Fatalf("%d records left, want 1001", got)
		}
	})

	t.Run("Overflow", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l, hold := open(t, decisionlog.Config{Buffer: 10}, decisionlog.Deps{Registerer: reg})
		// the store is busy (another session holds the write lock): the buffer fills,
		// what does not fit is counted, the rest is written once the store is free
		release := hold()
		n := 500
		for i := range n {
			l.Add(decisionlog.Record{Time: day0, Recipient: fmt.Sprintf("u%d@example.org", i), Verdict: "accept"})
		}
		release()
		flush(t, l)
		written := len(query(t, l, decisionlog.Filter{Limit: 1000}))
		dropped := int(testutil.ToFloat64(prometheusCounter(t, reg, "portcullis_decisionlog_records_dropped_total")))
		if written+dropped != n || dropped == 0 {
			t.Fatalf("written %d + dropped %d != %d (or nothing dropped)", written, dropped, n)
		}
		if w := int(testutil.ToFloat64(prometheusCounter(t, reg, "portcullis_decisionlog_records_written_total"))); w != written {
			t.Fatalf("written metric %d, records %d", w, written)
		}
	})
}

// prometheusCounter returns the collector of the named metric.
func prometheusCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := mf.GetMetric()[0].GetCounter().GetValue()
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "copy"})
			c.Add(v)
			return c
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
