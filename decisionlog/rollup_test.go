package decisionlog_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// rollupCheck fills the log with random records and outcomes (some outcomes before
// their record, some moving a record twice), then compares every aggregation the
// counters answer with the same aggregation over the records: after the writes, after
// a prune at a time inside an hour, and after the counters are built again from the
// records.
func rollupCheck(t *testing.T, l *decisionlog.Log) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 11))
	end := time.Date(2026, 3, 20, 13, 0, 0, 0, time.UTC)
	start := end.AddDate(0, 0, -40)
	verdicts := []string{"accept", "accept", "reject", "tempfail", "quarantine", "discard"}
	cats := []string{"", "RBL", "Spam", "Virus", "Header Subject"}
	outcomes := []string{"delivered", "deferred", "bounced", "discarded", "quarantined", "released"}
	const n = 3000
	var queued []decisionlog.Outcome
	for i := range n {
		rec := decisionlog.Record{
			Time:     start.Add(time.Duration(r.Int64N(int64(end.Sub(start))))),
			Verdict:  verdicts[r.IntN(len(verdicts))],
			Category: cats[r.IntN(len(cats))],
			Size:     int64(r.IntN(100000)),
			Score:    float64(r.IntN(300))/10 - 10,
			Sender:   fmt.Sprintf("S%d@D%d.example", r.IntN(20), r.IntN(8)),
		}
		switch r.IntN(10) {
		case 0:
			rec.Sender = ""
		case 1:
			rec.ClientIP = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", r.IntN(5)))
		case 2: // no address
		default:
			rec.ClientIP = netip.AddrFrom4([4]byte{192, 0, 2, byte(r.IntN(12))})
		}
		if r.IntN(8) > 0 {
			rec.Recipient = fmt.Sprintf("u%d@example.org", r.IntN(50))
		}
		if rec.Recipient != "" && rec.Verdict == "accept" {
			rec.QueueID = fmt.Sprintf("q%d", i)
			o := decisionlog.Outcome{QueueID: rec.QueueID, Recipient: rec.Recipient, Outcome: outcomes[r.IntN(len(outcomes))]}
			switch r.IntN(3) {
			case 0: // before its record
				l.SetOutcome(o)
			case 1:
				queued = append(queued, o)
			}
			if r.IntN(4) == 0 {
				queued = append(queued, decisionlog.Outcome{QueueID: rec.QueueID, Recipient: rec.Recipient, Outcome: outcomes[r.IntN(len(outcomes))]})
			}
		}
		l.Add(rec)
		if i%500 == 499 {
			flush(t, l)
		}
	}
	flush(t, l)
	for _, o := range queued {
		l.SetOutcome(o)
	}
	flush(t, l)

	compare := func(stage string) {
		t.Helper()
		all := decisionlog.Scope{All: true}
		var filters []decisionlog.Filter
		for _, since := range []time.Time{{}, end.AddDate(0, 0, -29).Truncate(24 * time.Hour), end.Add(-47 * time.Hour)} {
			for _, until := range []time.Time{{}, end.Add(-5 * time.Hour)} {
				filters = append(filters, decisionlog.Filter{Scope: all, Since: since, Until: until})
			}
		}
		for _, f := range filters {
			for _, b := range []decisionlog.Bucket{decisionlog.Hour, decisionlog.Day, decisionlog.Week} {
				same(t, stage+" blocked", l, func() (any, error) { return l.BlockedByCategory(ctx, f, b) })
				same(t, stage+" traffic", l, func() (any, error) { return l.Traffic(ctx, f, b) })
			}
			same(t, stage+" histogram", l, func() (any, error) { return l.ScoreHistogram(ctx, f, 1) })
			g := f
			g.Blocked = true
			for _, k := range []decisionlog.TopKey{decisionlog.TopSender, decisionlog.TopSenderDomain, decisionlog.TopClient} {
				for _, bySize := range []bool{false, true} {
					for _, top := range []int{3, 1000} {
						same(t, fmt.Sprint(stage, " top ", k, bySize, top), l, func() (any, error) { return l.Top(ctx, g, k, top, bySize) })
					}
				}
			}
		}
	}
	compare("written")
	if _, err := l.Prune(ctx, start.Add(10*24*time.Hour+17*time.Minute+3*time.Second)); err != nil {
		t.Fatal(err)
	}
	compare("pruned")
	if err := l.RebuildRollups(ctx); err != nil {
		t.Fatal(err)
	}
	compare("rebuilt")
	// pruning everything leaves no counter behind, not even at zero
	if _, err := l.Prune(ctx, end.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := l.CounterRows(ctx); err != nil || n != 0 {
		t.Fatalf("%d counters left after pruning every record (%v)", n, err)
	}
}

// same fails unless f answers the same from the counters and from the records, and the
// answer is not empty.
func same(t *testing.T, what string, l *decisionlog.Log, f func() (any, error)) {
	t.Helper()
	l.SetRollups(false)
	raw, err := f()
	l.SetRollups(true)
	if err != nil {
		t.Fatalf("%s from the records: %v", what, err)
	}
	rolled, err := f()
	if err != nil {
		t.Fatalf("%s from the counters: %v", what, err)
	}
	if reflect.ValueOf(raw).Len() == 0 {
		t.Fatalf("%s: nothing to compare", what)
	}
	if !reflect.DeepEqual(raw, rolled) {
		r, c := fmt.Sprint(raw), fmt.Sprint(rolled)
		i := 0
		for i < len(r) && i < len(c) && r[i] == c[i] {
			i++
		}
		from := max(0, i-200)
		t.Fatalf("%s differs at byte %d:\nrecords  ...%.400s\ncounters ...%.400s", what, i, r[from:], c[from:])
	}
}

// A log written before the counters existed gets them after its next open, in the
// background: the log answers at once (from the records), a restart in the middle of
// the build resumes it, and the counters end equal to the records' GROUP BYs.
func TestRollupsBuiltOnOpen(t *testing.T) {
	defer decisionlog.SetBuildChunk(100)()
	path := filepath.Join(t.TempDir(), "decisions.db")
	cfg := decisionlog.Config{Path: path, Retention: -1}
	l, err := decisionlog.Open(context.Background(), cfg, decisionlog.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		l.Add(decisionlog.Record{Time: day.Add(time.Duration(i) * 7 * time.Minute), Recipient: fmt.Sprintf("u%d@example.org", i%7),
			Sender: fmt.Sprintf("s%d@example.net", i%5), Verdict: []string{"accept", "reject"}[i%2], Category: "RBL", Score: float64(i % 9)})
	}
	flush(t, l)
	l.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"DROP TABLE decision_hours", "DROP TABLE decision_scores", "DROP TABLE decision_top", "DROP TABLE decision_top_rest", "DROP TABLE decision_meta"} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	ctx := context.Background()
	f := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Since: day}
	// the first open starts the build; one step, then a restart
	restore := decisionlog.NoBackgroundBuild()
	if l, err = decisionlog.Open(ctx, cfg, decisionlog.Deps{}); err != nil {
		t.Fatal(err)
	}
	if l.RollupsReady(ctx) {
		t.Fatal("counters ready before their build")
	}
	if got := query(t, l, decisionlog.Filter{}); len(got) != 300 {
		t.Fatalf("%d records while building, want 300", len(got))
	}
	if tr, err := l.Traffic(ctx, f, decisionlog.Day); err != nil || len(tr) != 2 || tr[0].Received+tr[1].Received != 300 {
		t.Fatalf("traffic while building: %+v %v", tr, err)
	}
	if done, err := l.BuildStep(ctx); err != nil || done {
		t.Fatalf("first step: done %v, %v", done, err)
	}
	l.Close()
	if l, err = decisionlog.Open(ctx, cfg, decisionlog.Deps{}); err != nil {
		t.Fatal(err)
	}
	if floor, built, err := l.BuildProgress(ctx); err != nil || floor != 300 || built != 100 {
		t.Fatalf("after a restart the build is at %d of %d (%v), want 100 of 300", built, floor, err)
	}
	l.Close()
	restore()
	// the background build finishes it
	if l, err = decisionlog.Open(ctx, cfg, decisionlog.Deps{}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	deadline := time.Now().Add(time.Minute)
	for !l.RollupsReady(ctx) {
		if time.Now().After(deadline) {
			t.Fatal("the background build did not finish in a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	same(t, "traffic", l, func() (any, error) { return l.Traffic(ctx, f, decisionlog.Day) })
	same(t, "histogram", l, func() (any, error) { return l.ScoreHistogram(ctx, f, 1) })
	f.Blocked = true
	same(t, "top", l, func() (any, error) { return l.Top(ctx, f, decisionlog.TopSender, 10, false) })
}
