package decisionlog_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// daysCheck: the day and week figures and the score histogram, read from the daily
// counters for the rolled days, equal the same aggregations over the records: after a
// roll, after records and outcomes that change rolled days (a record held past
// midnight, an outcome a day late), across a day boundary the next roll passes, after a
// prune inside a rolled day, and after the counters are built again in the background.
// A daily counter tampered with shows in the figures (they read them), and every roll
// leaves daily counters behind (they exist).
func daysCheck(t *testing.T, l *decisionlog.Log) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 17))
	start := day0 // Monday 2026-03-02
	const days = 12
	verdicts := []string{"accept", "accept", "reject", "tempfail", "quarantine", "discard"}
	cats := []string{"", "RBL", "Spam", "Virus"}
	outcomes := []string{"delivered", "deferred", "bounced"}
	n := 0
	add := func(at time.Time) decisionlog.Record {
		n++
		rec := decisionlog.Record{Time: at, Verdict: verdicts[r.IntN(len(verdicts))], Category: cats[r.IntN(len(cats))],
			Size: int64(r.IntN(50000)), Score: float64(r.IntN(250))/10 - 5, Sender: fmt.Sprintf("s%d@example.net", r.IntN(9))}
		if r.IntN(6) > 0 {
			rec.Recipient = fmt.Sprintf("u%d@example.org", r.IntN(20))
		}
		if rec.Recipient != "" && rec.Verdict == "accept" {
			rec.QueueID = fmt.Sprintf("q%d", n)
		}
		l.Add(rec)
		return rec
	}
	var accepted []decisionlog.Record
	for range 2500 {
		at := start.Add(time.Duration(r.Int64N(int64(days * 24 * time.Hour))))
		if r.IntN(4) == 0 { // around midnight
			at = start.Add(time.Duration(1+r.IntN(days-1))*24*time.Hour + time.Duration(r.IntN(240)-120)*time.Second)
		}
		if rec := add(at); rec.QueueID != "" {
			accepted = append(accepted, rec)
		}
	}
	flush(t, l)

	all := decisionlog.Scope{All: true}
	compare := func(stage string) {
		t.Helper()
		var filters []decisionlog.Filter
		for _, since := range []time.Time{{}, start.Add(24 * time.Hour), start.Add(2*24*time.Hour + 5*time.Hour), start.Add(9 * 24 * time.Hour)} {
			for _, until := range []time.Time{{}, start.Add(7 * 24 * time.Hour), start.Add(8*24*time.Hour + 13*time.Hour)} {
				if until.IsZero() || since.Before(until) {
					filters = append(filters, decisionlog.Filter{Scope: all, Since: since, Until: until})
				}
			}
		}
		for _, f := range filters {
			for _, b := range []decisionlog.Bucket{decisionlog.Day, decisionlog.Week, decisionlog.Hour} {
				same(t, fmt.Sprint(stage, " blocked ", b, f.Since, f.Until), l, func() (any, error) { return l.BlockedByCategory(ctx, f, b) })
				same(t, fmt.Sprint(stage, " traffic ", b, f.Since, f.Until), l, func() (any, error) { return l.Traffic(ctx, f, b) })
			}
			same(t, fmt.Sprint(stage, " histogram ", f.Since, f.Until), l, func() (any, error) { return l.ScoreHistogram(ctx, f, 1) })
		}
	}
	// rolled fails unless the days before want are rolled and daily counters exist
	// (the pruner's hourly Optimize may have rolled further, up to the clock's today)
	rolled := func(stage string, want time.Time) {
		t.Helper()
		b, rows, err := l.DaysRolled(ctx)
		if err != nil || b.Before(want) || rows == 0 {
			t.Fatalf("%s: days rolled up to %v with %d daily counters (%v), want up to %v and some", stage, b, rows, err, want)
		}
	}
	compare("hourly only")

	mid := start.Add(6 * 24 * time.Hour)
	if err := l.RollDays(ctx, mid); err != nil {
		t.Fatal(err)
	}
	rolled("first roll", mid)
	compare("rolled")

	// The figures read the daily counters: one of them changed shows.
	f := decisionlog.Filter{Scope: all, Since: start}
	before, err := l.Traffic(ctx, f, decisionlog.Day)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.ExecSQL(ctx, "UPDATE decision_days SET n = n + 1000 WHERE d = ? AND verdict = 'accept' AND conn = 0", start.Add(24*time.Hour).Unix()/86400); err != nil {
		t.Fatal(err)
	}
	tampered, err := l.Traffic(ctx, f, decisionlog.Day)
	if err != nil {
		t.Fatal(err)
	}
	if tampered[1].Received <= before[1].Received || (tampered[1].Received-before[1].Received)%1000 != 0 {
		t.Fatalf("the day figure does not read the daily counters: %d received, then %d", before[1].Received, tampered[1].Received)
	}
	if err := l.ExecSQL(ctx, "UPDATE decision_days SET n = n - 1000 WHERE d = ? AND verdict = 'accept' AND conn = 0", start.Add(24*time.Hour).Unix()/86400); err != nil {
		t.Fatal(err)
	}

	// Changes to rolled days: records written late (held past midnight, a node's
	// clock) and outcomes for records of rolled days, some moving a record twice.
	for i := range 300 {
		if rec := add(mid.Add(-time.Duration(1+r.IntN(3*3600)) * time.Second)); rec.QueueID != "" && i%2 == 0 {
			accepted = append(accepted, rec)
		}
	}
	flush(t, l)
	for i, rec := range accepted {
		if i%3 == 0 {
			l.SetOutcome(decisionlog.Outcome{QueueID: rec.QueueID, Recipient: rec.Recipient, Outcome: outcomes[i%len(outcomes)]})
		}
		if i%7 == 0 {
			l.SetOutcome(decisionlog.Outcome{QueueID: rec.QueueID, Recipient: rec.Recipient, Outcome: "delivered"})
		}
	}
	flush(t, l)
	compare("changed after the roll")

	// The next roll passes the day boundaries where records were added late.
	next := start.Add(10 * 24 * time.Hour)
	if err := l.RollDays(ctx, next); err != nil {
		t.Fatal(err)
	}
	rolled("second roll", next)
	compare("rolled again")

	// A prune inside a rolled day, then the roll's clean-up of counters at zero.
	if _, err := l.Prune(ctx, start.Add(2*24*time.Hour+7*time.Hour+17*time.Minute)); err != nil {
		t.Fatal(err)
	}
	compare("pruned")
	if err := l.RollDays(ctx, next); err != nil {
		t.Fatal(err)
	}
	compare("pruned, cleaned")

	// Built again from the records, as a log written before the counters existed: the
	// daily counters go with the hourly ones, and the background build's end rolls
	// every completed day (the clock's today is long after these records).
	if err := l.StartRebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if b, rows, err := l.DaysRolled(ctx); err != nil || !b.Before(start) || rows != 0 {
		t.Fatalf("after a rebuild's start: days rolled up to %v with %d daily counters (%v)", b, rows, err)
	}
	l.BuildRollups(ctx)
	rolled("background build", time.Now().UTC().Truncate(24*time.Hour))
	compare("built")

	// Pruning every record leaves no daily counter either, once rolled.
	if _, err := l.Prune(ctx, start.Add(days*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.Optimize(ctx); err != nil {
		t.Fatal(err)
	}
	if _, rows, err := l.DaysRolled(ctx); err != nil || rows != 0 {
		t.Fatalf("%d daily counters left after pruning every record (%v)", rows, err)
	}
}

// Two nodes share a PostgreSQL log: one rolls the days one at a time while the other
// writes records into those days and outcomes that move their counts. The roll
// recreates the triggers, which waits for the writers' transactions and keeps new ones
// out until it commits: no change falls between the roll's sums and its new bound, and
// the figures equal the records' at the end.
func TestPostgresDaysWhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	open := func() *decisionlog.Log {
		l, err := decisionlog.Open(ctx, decisionlog.Config{Postgres: dsn, Retention: -1, OutcomeWait: time.Millisecond}, decisionlog.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	writer, roller := open(), open()
	start := day0
	const days = 16
	r := rand.New(rand.NewPCG(3, 9))
	rec := func(i int) decisionlog.Record {
		return decisionlog.Record{Time: start.Add(time.Duration(r.Int64N(int64(days * 24 * time.Hour)))), Recipient: fmt.Sprintf("u%d@example.org", i%13),
			Verdict: []string{"accept", "accept", "reject"}[i%3], Category: []string{"", "RBL", "Spam"}[i%3], QueueID: fmt.Sprintf("q%d", i),
			Size: int64(i), Score: float64(i%17) - 3}
	}
	for i := range 2000 {
		writer.Add(rec(i))
	}
	flush(t, writer)
	done := make(chan error, 1)
	go func() {
		for d := 1; d <= days; d++ {
			if err := roller.RollDays(ctx, start.Add(time.Duration(d)*24*time.Hour)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	outcomes := []string{"delivered", "deferred", "bounced"}
	for i := range 2000 {
		if i%3 != 2 {
			writer.SetOutcome(decisionlog.Outcome{QueueID: fmt.Sprintf("q%d", i), Recipient: fmt.Sprintf("u%d@example.org", i%13), Outcome: outcomes[i%3]})
		}
		if i%4 == 0 {
			writer.Add(rec(2000 + i))
		}
		if i%50 == 0 {
			flush(t, writer)
		}
	}
	flush(t, writer)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, rows, err := writer.DaysRolled(ctx); err != nil || b.Before(start.Add(days*24*time.Hour)) || rows == 0 {
		t.Fatalf("days rolled up to %v with %d daily counters (%v)", b, rows, err)
	}
	f := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Since: start}
	for _, b := range []decisionlog.Bucket{decisionlog.Day, decisionlog.Week} {
		same(t, fmt.Sprint("traffic ", b), writer, func() (any, error) { return writer.Traffic(ctx, f, b) })
		same(t, fmt.Sprint("blocked ", b), writer, func() (any, error) { return writer.BlockedByCategory(ctx, f, b) })
	}
	same(t, "histogram", writer, func() (any, error) { return writer.ScoreHistogram(ctx, f, 1) })
}

// A roll that starts while another node's writer is in the middle of its transaction,
// which adds the first hourly counter of a day the roll then passes (a record held past
// midnight on a quiet log, the first record of a new store): the roll waits for the
// writer before it looks for the first counted day, not only before it sums, or the
// bound jumps over that day and the day is missing from the daily counters for good.
// The writer is held in its transaction by a lock on the top lists' table, which it
// updates after the hourly counters.
func TestPostgresRollWaitsForWriterInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	open := func() *decisionlog.Log {
		l, err := decisionlog.Open(ctx, decisionlog.Config{Postgres: dsn, Retention: -1}, decisionlog.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	writer, roller := open(), open()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waiting := func(n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			var w int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_locks WHERE NOT granted").Scan(&w); err != nil {
				t.Fatal(err)
			}
			if w >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d transactions waiting for a lock, want %d", w, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	hold, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback()
	if _, err := hold.ExecContext(ctx, "LOCK TABLE decision_top IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	writer.Add(decisionlog.Record{Time: day0.Add(5 * time.Hour), Recipient: "u@example.org", Sender: "s@example.net",
		Verdict: "reject", Category: "RBL", Size: 100, Score: 3})
	flushed := make(chan error, 1)
	go func() { flushed <- writer.Flush(ctx) }()
	waiting(1) // the writer, its hourly counter written, waits for decision_top
	rolled := make(chan error, 1)
	go func() { rolled <- roller.RollDays(ctx, day0.Add(2*24*time.Hour)) }()
	waiting(2) // the roll waits for the writer
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := <-rolled; err != nil {
		t.Fatal(err)
	}
	f := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Since: day0}
	for _, b := range []decisionlog.Bucket{decisionlog.Day, decisionlog.Week} {
		same(t, fmt.Sprint("traffic ", b), writer, func() (any, error) { return writer.Traffic(ctx, f, b) })
		same(t, fmt.Sprint("blocked ", b), writer, func() (any, error) { return writer.BlockedByCategory(ctx, f, b) })
	}
	same(t, "histogram", writer, func() (any, error) { return writer.ScoreHistogram(ctx, f, 1) })
}
