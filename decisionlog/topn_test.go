package decisionlog_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// exactTop is the top n of counts, largest first, ties by key: the GROUP BY's answer.
func exactTop(counts map[string]int64, n int) []decisionlog.TopEntry {
	var out []decisionlog.TopEntry
	for k, c := range counts {
		out = append(out, decisionlog.TopEntry{Key: k, Count: c})
	}
	slices.SortFunc(out, func(a, b decisionlog.TopEntry) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Key, b.Key))
	})
	return out[:min(n, len(out))]
}

func counts(top []decisionlog.TopEntry) []decisionlog.TopEntry {
	out := make([]decisionlog.TopEntry, len(top))
	for i, e := range top {
		out[i] = decisionlog.TopEntry{Key: e.Key, Count: e.Count, Approx: e.Approx}
	}
	return out
}

// topCapCheck writes three days of blocked mail from a few heavy senders and many that
// send once or twice, and checks the admin's top senders against the counts made here:
// exact while no day holds more keys than the cap; once the days are trimmed to a cap
// of 5 keys, within the bound the list reports, the heavy senders exact and in order;
// a user's list (their records only, never trimmed); and retention, which prunes the
// counters with the records until none is left.
func topCapCheck(t *testing.T, l *decisionlog.Log) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 5))
	type rec struct {
		t      time.Time
		sender string
		rcpt   string
	}
	var recs []rec
	heavy := []int{40, 25, 12, 9} // per day
	for d := range 3 {
		day := day0.AddDate(0, 0, d)
		for h, n := range heavy {
			for range n {
				recs = append(recs, rec{day.Add(time.Duration(r.Int64N(int64(24 * time.Hour)))), fmt.Sprintf("heavy%d@spam.test", h), fmt.Sprintf("u%d@example.org", r.IntN(5))})
			}
		}
		for i := range 60 {
			for range 1 + i%2 {
				recs = append(recs, rec{day.Add(time.Duration(r.Int64N(int64(24 * time.Hour)))), fmt.Sprintf("once%d-%d@noise.test", d, i), fmt.Sprintf("u%d@example.org", r.IntN(5))})
			}
		}
	}
	for i, x := range recs {
		l.Add(decisionlog.Record{Time: x.t, Sender: x.sender, Recipient: x.rcpt, Verdict: "reject", Category: "RBL", Size: 100,
			ClientIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 200)})})
		// accepted mail is not in the blocked lists
		l.Add(decisionlog.Record{Time: x.t, Sender: "heavy3@spam.test", Recipient: x.rcpt, Verdict: "accept"})
	}
	flush(t, l)
	exact := func(since time.Time, rcpt string) map[string]int64 {
		m := map[string]int64{}
		for _, x := range recs {
			if !x.t.Before(since) && (rcpt == "" || x.rcpt == rcpt) {
				m[x.sender]++
			}
		}
		return m
	}
	all := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Since: day0, Blocked: true}
	top := func(f decisionlog.Filter, n int) []decisionlog.TopEntry {
		t.Helper()
		got, err := l.Top(ctx, f, decisionlog.TopSender, n, false)
		if err != nil {
			t.Fatal(err)
		}
		return counts(got)
	}
	// no day is over the default cap: the counters' list is the GROUP BY's
	if got, want := top(all, 15), exactTop(exact(day0, ""), 15); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("top senders before trimming:\n got %v\nwant %v", got, want)
	}
	l.SetTopCap(5)
	if err := l.TrimCounters(ctx); err != nil {
		t.Fatal(err)
	}
	bounded := func(stage string, since time.Time) {
		t.Helper()
		f := all
		f.Since = since
		got := top(f, 10)
		ex := exact(since, "")
		if len(got) < 5 || got[0].Approx == 0 {
			t.Fatalf("%s: a trimmed list must say it is approximate: %v", stage, got)
		}
		listed := map[string]bool{}
		for _, e := range got {
			listed[e.Key] = true
			if e.Count > ex[e.Key] || ex[e.Key] > e.Count+e.Approx {
				t.Fatalf("%s: %s counted %d, has %d, bound %d", stage, e.Key, e.Count, ex[e.Key], e.Approx)
			}
		}
		var last int64 // what a key not listed may have counted
		if len(got) == 10 {
			last = got[9].Count
		}
		for k, n := range ex {
			if !listed[k] && n > last+got[0].Approx {
				t.Fatalf("%s: %s (%d) missing from %v", stage, k, n, got)
			}
		}
		// the heavy senders are among every day's largest: exact and in order
		want := exactTop(ex, 4)
		for i := range want {
			want[i].Approx = got[0].Approx
		}
		if fmt.Sprint(got[:4]) != fmt.Sprint(want) {
			t.Fatalf("%s: heavy senders %v, want %v", stage, got[:4], want)
		}
	}
	bounded("trimmed", day0)
	// a user's list reads their records: exact, and nobody else's
	alice := decisionlog.Filter{Scope: decisionlog.Scope{Recipients: []string{"u1@example.org"}}, Since: day0, Blocked: true}
	if got, want := top(alice, 1000), exactTop(exact(day0, "u1@example.org"), 1000); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("a user's top senders:\n got %v\nwant %v", got, want)
	}
	// retention: a prune inside the second day leaves the first day's counters none,
	// and the bound still holds for what is left
	cut := day0.Add(24*time.Hour + 7*time.Hour)
	if _, err := l.Prune(ctx, cut); err != nil {
		t.Fatal(err)
	}
	left := recs[:0]
	for _, x := range recs {
		if !x.t.Before(cut) {
			left = append(left, x)
		}
	}
	recs = left
	bounded("pruned", day0)
	l.SetTopCap(1000)
	if err := l.RebuildRollups(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := top(all, 15), exactTop(exact(day0, ""), 15); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("top senders rebuilt:\n got %v\nwant %v", got, want)
	}
	if _, err := l.Prune(ctx, day0.AddDate(0, 0, 4)); err != nil {
		t.Fatal(err)
	}
	if n, err := l.CounterRows(ctx); err != nil || n != 0 {
		t.Fatalf("%d counters left after pruning every record (%v)", n, err)
	}
}

// buildCheck forgets the counters of a log full of records, then builds them a chunk at
// a time while records, outcomes (of records counted already and not yet) and a prune
// come in, as they do while a large log's counters are built in the background: until
// the build is done the aggregations read the records; after it the counters equal the
// records' GROUP BYs.
func buildCheck(t *testing.T, l *decisionlog.Log) {
	ctx := context.Background()
	defer decisionlog.SetBuildChunk(250)()
	r := rand.New(rand.NewPCG(9, 4))
	start := day0
	span := int64(6 * 24 * time.Hour)
	verdicts := []string{"accept", "accept", "reject", "quarantine"}
	outcomes := []string{"delivered", "deferred", "bounced"}
	add := func(n, base int) {
		for i := range n {
			rec := decisionlog.Record{Time: start.Add(time.Duration(r.Int64N(span))), Verdict: verdicts[r.IntN(len(verdicts))],
				Category: []string{"", "RBL", "Spam"}[r.IntN(3)], Size: int64(r.IntN(5000)), Score: float64(r.IntN(100)) / 10,
				Sender: fmt.Sprintf("s%d@d%d.example", r.IntN(15), r.IntN(5)), Recipient: fmt.Sprintf("u%d@example.org", r.IntN(9)),
				ClientIP: netip.AddrFrom4([4]byte{198, 51, 100, byte(r.IntN(9))}), QueueID: fmt.Sprintf("q%d", base+i)}
			l.Add(rec)
		}
		flush(t, l)
	}
	add(1500, 0)
	if err := l.StartRebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if l.RollupsReady(ctx) {
		t.Fatal("counters ready before their build")
	}
	for range 2 {
		if done, err := l.BuildStep(ctx); err != nil || done {
			t.Fatalf("build step: done %v, %v", done, err)
		}
	}
	floor, built, err := l.BuildProgress(ctx)
	if err != nil || floor-built < 500 {
		t.Fatalf("build progress %d of %d (%v)", built, floor, err)
	}
	// outcomes for records on both sides of the build's progress, twice for some
	for i := 0; i < 1500; i += 3 {
		l.SetOutcome(decisionlog.Outcome{QueueID: fmt.Sprintf("q%d", i), Recipient: "", Outcome: outcomes[i%3]})
	}
	recs := query(t, l, decisionlog.Filter{})
	for _, rec := range recs {
		if rec.ID%4 == 0 {
			l.SetOutcome(decisionlog.Outcome{QueueID: rec.QueueID, Recipient: rec.Recipient, Outcome: outcomes[int(rec.ID)%3]})
		}
		if rec.ID%12 == 0 {
			l.SetOutcome(decisionlog.Outcome{QueueID: rec.QueueID, Recipient: rec.Recipient, Outcome: "delivered"})
		}
	}
	add(400, 10000) // new records: the writer counts them
	flush(t, l)
	if _, err := l.Prune(ctx, start.Add(30*time.Hour+17*time.Minute)); err != nil {
		t.Fatal(err)
	}
	all := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Since: start}
	same(t, "traffic while building", l, func() (any, error) { return l.Traffic(ctx, all, decisionlog.Day) })
	for {
		done, err := l.BuildStep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if !l.RollupsReady(ctx) {
		t.Fatal("counters not ready after their build")
	}
	blocked := all
	blocked.Blocked = true
	for _, b := range []decisionlog.Bucket{decisionlog.Hour, decisionlog.Day, decisionlog.Week} {
		same(t, "traffic built", l, func() (any, error) { return l.Traffic(ctx, all, b) })
		same(t, "blocked built", l, func() (any, error) { return l.BlockedByCategory(ctx, all, b) })
	}
	same(t, "histogram built", l, func() (any, error) { return l.ScoreHistogram(ctx, all, 1) })
	for _, k := range []decisionlog.TopKey{decisionlog.TopSender, decisionlog.TopSenderDomain, decisionlog.TopClient} {
		same(t, "top built", l, func() (any, error) { return l.Top(ctx, blocked, k, 20, false) })
	}
}
