package decisionlog_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// TestHeld: the records of accepted messages wait in the writer for their outcome
// (Config.OutcomeWait), on both stores.
func TestHeld(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { heldSuite(t, sqliteOpener) })
	t.Run("PostgreSQL", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts PostgreSQL")
		}
		heldSuite(t, pgOpener(pgtest.Start(t)))
	})
}

// gauge reads the named gauge of reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return int(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// joined reads portcullis_decisionlog_outcomes_joined_total{how}.
func joined(t *testing.T, reg *prometheus.Registry, how string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "portcullis_decisionlog_outcomes_joined_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == how {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// eventually fails unless cond holds within 30 s (a bound against a hung writer on a
// loaded machine, not a speed target).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30 s: %s", what)
		}
	}
}

func accepted(i int) decisionlog.Record {
	return decisionlog.Record{Time: day0.Add(time.Duration(i) * time.Minute), Session: fmt.Sprint("s", i), Listener: "mx",
		Sender: "a@example.net", Recipient: fmt.Sprintf("u%d@example.org", i), Subject: "hello", Size: 1000 + int64(i),
		Stage: "data", Verdict: "accept", Reply: "250 2.0.0 OK queued", QueueID: fmt.Sprint("Q", i)}
}

func delivered(i int) decisionlog.Outcome {
	return decisionlog.Outcome{QueueID: fmt.Sprint("Q", i), Recipient: fmt.Sprintf("U%d@example.org", i), Time: day0.Add(time.Duration(i)*time.Minute + time.Second),
		Outcome: decisionlog.OutcomeDelivered, Reason: "250 2.0.0 delivered", Relay: "local", DSN: "2.0.0"}
}

// sameTraffic fails unless the counters and the records agree on the traffic (which
// counts outcomes), and the counters count want delivered.
func sameTraffic(t *testing.T, l *decisionlog.Log, wantDelivered int64) {
	t.Helper()
	ctx := context.Background()
	all := decisionlog.Filter{Scope: decisionlog.Scope{All: true}}
	for _, b := range []decisionlog.Bucket{decisionlog.Hour, decisionlog.Day} {
		same(t, fmt.Sprint("traffic ", b), l, func() (any, error) { return l.Traffic(ctx, all, b) })
	}
	tr, err := l.Traffic(ctx, all, decisionlog.Week)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range tr {
		n += r.Delivered
	}
	if n != wantDelivered {
		t.Fatalf("counters: %d delivered, want %d (%+v)", n, wantDelivered, tr)
	}
}

func heldSuite(t *testing.T, open opener) {
	t.Run("JoinedBeforeInsert", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l, _ := open(t, decisionlog.Config{OutcomeWait: time.Hour}, decisionlog.Deps{Registerer: reg})
		l.Add(accepted(1))
		eventually(t, "the record held", func() bool { return gauge(t, reg, "portcullis_decisionlog_records_held") == 1 })
		if got := query(t, l, decisionlog.Filter{}); len(got) != 0 {
			t.Fatalf("a held record is in the store: %+v", got)
		}
		l.SetOutcome(delivered(1))
		// no Flush: the outcome alone writes the record, with it
		eventually(t, "the record written", func() bool { return len(query(t, l, decisionlog.Filter{})) == 1 })
		got := query(t, l, decisionlog.Filter{})[0]
		if got.Outcome != "delivered" || got.Relay != "local" || got.DSN != "2.0.0" || !got.OutcomeTime.Equal(day0.Add(time.Minute+time.Second)) || got.Deferrals != 0 {
			t.Fatalf("record %+v", got)
		}
		if n := gauge(t, reg, "portcullis_decisionlog_records_held"); n != 0 {
			t.Fatalf("%d held", n)
		}
		if w := testutil.ToFloat64(prometheusCounter(t, reg, "portcullis_decisionlog_records_written_total")); w != 1 {
			t.Fatalf("written %v", w)
		}
		if h, u := joined(t, reg, "held"), joined(t, reg, "update"); h != 1 || u != 0 {
			t.Fatalf("outcomes joined held %d, by update %d", h, u)
		}
		sameTraffic(t, l, 1)
	})

	t.Run("Expired", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l, _ := open(t, decisionlog.Config{OutcomeWait: 300 * time.Millisecond}, decisionlog.Deps{Registerer: reg})
		l.Add(accepted(1))
		// no Flush: the wait ends and the idle writer writes it, without outcome
		eventually(t, "the record written", func() bool { return len(query(t, l, decisionlog.Filter{})) == 1 })
		if got := query(t, l, decisionlog.Filter{})[0]; got.Outcome != "" {
			t.Fatalf("record %+v", got)
		}
		sameTraffic(t, l, 0)
		// then its outcome updates it
		l.SetOutcome(delivered(1))
		flush(t, l)
		if got := query(t, l, decisionlog.Filter{})[0]; got.Outcome != "delivered" || got.Relay != "local" {
			t.Fatalf("record %+v", got)
		}
		if h, u := joined(t, reg, "held"), joined(t, reg, "update"); h != 0 || u != 1 {
			t.Fatalf("outcomes joined held %d, by update %d", h, u)
		}
		sameTraffic(t, l, 1)
	})

	t.Run("Deferred", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{OutcomeWait: time.Hour}, decisionlog.Deps{})
		l.Add(accepted(1))
		d := delivered(1)
		d.Outcome, d.Reason, d.DSN = decisionlog.OutcomeDeferred, "451 4.3.0 busy", "4.3.0"
		l.SetOutcome(d)
		// a deferral ends the wait (the next attempt is minutes away)
		eventually(t, "the record written", func() bool { return len(query(t, l, decisionlog.Filter{})) == 1 })
		if got := query(t, l, decisionlog.Filter{})[0]; got.Outcome != "deferred" || got.Deferrals != 1 || got.DSN != "4.3.0" {
			t.Fatalf("record %+v", got)
		}
		l.SetOutcome(delivered(1))
		flush(t, l)
		if got := query(t, l, decisionlog.Filter{})[0]; got.Outcome != "delivered" || got.Deferrals != 1 {
			t.Fatalf("record %+v", got)
		}
		sameTraffic(t, l, 1)
	})

	t.Run("Flush", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l, _ := open(t, decisionlog.Config{OutcomeWait: time.Hour}, decisionlog.Deps{Registerer: reg})
		for i := range 3 {
			l.Add(accepted(i))
		}
		flush(t, l)
		if got := query(t, l, decisionlog.Filter{}); len(got) != 3 || got[0].Outcome != "" {
			t.Fatalf("after Flush: %+v", got)
		}
		if n := gauge(t, reg, "portcullis_decisionlog_records_held"); n != 0 {
			t.Fatalf("%d held after Flush", n)
		}
		for i := range 3 {
			l.SetOutcome(delivered(i))
		}
		flush(t, l)
		if got := query(t, l, decisionlog.Filter{Outcomes: []string{"delivered"}}); len(got) != 3 {
			t.Fatalf("after the outcomes: %+v", got)
		}
		sameTraffic(t, l, 3)
	})

	t.Run("Overflow", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l, _ := open(t, decisionlog.Config{OutcomeWait: time.Hour, MaxHeld: 3}, decisionlog.Deps{Registerer: reg})
		for i := range 10 {
			l.Add(accepted(i))
		}
		// beyond three, the oldest are written early, never dropped
		eventually(t, "seven written", func() bool { return len(query(t, l, decisionlog.Filter{})) == 7 })
		got := query(t, l, decisionlog.Filter{Sort: decisionlog.SortOldest})
		for i, r := range got {
			if r.QueueID != fmt.Sprint("Q", i) {
				t.Fatalf("written early: %v, want the oldest", ids(got))
			}
		}
		if n := gauge(t, reg, "portcullis_decisionlog_records_held"); n != 3 {
			t.Fatalf("%d held, want 3", n)
		}
		for i := range 10 {
			l.SetOutcome(delivered(i))
		}
		flush(t, l)
		if got := query(t, l, decisionlog.Filter{Outcomes: []string{"delivered"}}); len(got) != 10 {
			t.Fatalf("%d delivered, want 10", len(got))
		}
		sameTraffic(t, l, 10)
	})

	t.Run("OverflowBytes", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{OutcomeWait: time.Hour}, decisionlog.Deps{})
		// 40 records of 1 MiB each: beyond the memory bound (32 MiB), the oldest go
		for i := range 40 {
			r := accepted(i)
			r.Subject = strings.Repeat("x", 1<<20)
			l.Add(r)
		}
		eventually(t, "the oldest written", func() bool { return len(query(t, l, decisionlog.Filter{})) >= 8 })
		if n := len(query(t, l, decisionlog.Filter{})); n == 40 {
			t.Fatal("every record written: nothing held")
		}
		flush(t, l)
		if n := len(query(t, l, decisionlog.Filter{})); n != 40 {
			t.Fatalf("%d written, want 40", n)
		}
	})

	t.Run("Duplicate", func(t *testing.T) {
		l, _ := open(t, decisionlog.Config{OutcomeWait: time.Hour}, decisionlog.Deps{})
		// the same queue id and recipient twice: the outcome reaches both, as it does
		// without the wait
		l.Add(accepted(1))
		l.Add(accepted(1))
		l.SetOutcome(delivered(1))
		flush(t, l)
		if got := query(t, l, decisionlog.Filter{Outcomes: []string{"delivered"}}); len(got) != 2 {
			t.Fatalf("%+v", got)
		}
		sameTraffic(t, l, 2)
	})

	t.Run("Off", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l, _ := open(t, decisionlog.Config{OutcomeWait: -1}, decisionlog.Deps{Registerer: reg})
		l.Add(accepted(1))
		eventually(t, "the record written", func() bool { return len(query(t, l, decisionlog.Filter{})) == 1 })
		if n := gauge(t, reg, "portcullis_decisionlog_records_held"); n != 0 {
			t.Fatalf("%d held", n)
		}
	})

	t.Run("Counters", func(t *testing.T) {
		// Outcomes by every path: before their record, while it is held, after its wait
		// ended, twice: the counters count each record's last outcome once.
		l, _ := open(t, decisionlog.Config{OutcomeWait: 50 * time.Millisecond, Retention: -1}, decisionlog.Deps{})
		r := rand.New(rand.NewPCG(3, 5))
		outcomes := []string{"delivered", "deferred", "bounced", "delivered"}
		last := map[int]string{}
		var later []decisionlog.Outcome
		const n = 600
		for i := range n {
			rec := accepted(i)
			if r.IntN(5) == 0 {
				rec.Verdict, rec.QueueID = "reject", ""
				l.Add(rec)
				continue
			}
			o := delivered(i)
			o.Outcome = outcomes[r.IntN(len(outcomes))]
			switch r.IntN(4) {
			case 0: // before its record
				l.SetOutcome(o)
				l.Add(rec)
			case 1: // while held
				l.Add(rec)
				l.SetOutcome(o)
			case 2: // after the wait
				l.Add(rec)
				later = append(later, o)
			default: // none
				l.Add(rec)
				continue
			}
			last[i] = o.Outcome
			if r.IntN(3) == 0 {
				o2 := o
				o2.Outcome = outcomes[r.IntN(len(outcomes))]
				later = append(later, o2)
				last[i] = o2.Outcome
			}
			if i%100 == 99 {
				time.Sleep(60 * time.Millisecond) // some waits end
			}
		}
		time.Sleep(100 * time.Millisecond)
		for _, o := range later {
			l.SetOutcome(o)
		}
		flush(t, l)
		var want int64
		for _, o := range last {
			if o == "delivered" {
				want++
			}
		}
		if got := int64(len(query(t, l, decisionlog.Filter{Outcomes: []string{"delivered"}}))); got != want {
			t.Fatalf("%d records delivered, want %d", got, want)
		}
		sameTraffic(t, l, want)
	})
}

// TestHeldClose: Close writes the held records.
func TestHeldClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: path, OutcomeWait: time.Hour}, decisionlog.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		l.Add(accepted(i))
	}
	l.SetOutcome(delivered(4))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = decisionlog.Open(context.Background(), decisionlog.Config{Path: path}, decisionlog.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := query(t, l, decisionlog.Filter{Sort: decisionlog.SortOldest}); len(got) != 5 || got[4].Outcome != "delivered" || got[0].Outcome != "" {
		t.Fatalf("after Close: %+v", got)
	}
}

// TestOutcomeDeadlock: an outcome's update that PostgreSQL picks as a deadlock's victim
// (here against a transaction that, like the pruner, locks records and counters in the
// other order) is tried again, not lost.
func TestOutcomeDeadlock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	reg := prometheus.NewRegistry()
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Postgres: dsn, OutcomeWait: -1}, decisionlog.Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Add(accepted(1))
	flush(t, l)

	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// The writer, not this session, must be the victim: PostgreSQL checks for a deadlock
	// in the session that has waited deadlock_timeout, and this one waits second; a
	// longer timeout here makes sure (the test's user is a superuser).
	if _, err := c.Exec(ctx, "SET deadlock_timeout = '60s'"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1 FROM decision_hours FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	// the writer locks the record, then waits for the counters
	l.SetOutcome(delivered(1))
	waiting := func() bool {
		var n int
		err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))`).Scan(&n)
		return err == nil && n == 1
	}
	for deadline := time.Now().Add(30 * time.Second); !waiting(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			rows, _ := c.Query(ctx, `SELECT pid, backend_type, coalesce(wait_event_type, ''), coalesce(wait_event, ''), coalesce(state, ''), pg_blocking_pids(pid)::text, left(query, 80) FROM pg_stat_activity WHERE backend_type = 'client backend'`)
			all, _ := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
			t.Fatalf("the writer does not wait for the counters: %v", all)
		}
	}
	// this session waits for the record: a deadlock, the writer's transaction aborts
	locked := make(chan error, 1)
	go func() {
		_, err := tx.Exec(ctx, "SELECT 1 FROM decisions FOR UPDATE")
		locked <- err
	}()
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("no deadlock detected")
	}
	// the writer tries again once this transaction is gone
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	flush(t, l)
	got := query(t, l, decisionlog.Filter{})
	if len(got) != 1 || got[0].Outcome != "delivered" {
		t.Fatalf("after the deadlock: %+v", got)
	}
	if f := testutil.ToFloat64(prometheusCounter(t, reg, "portcullis_decisionlog_records_failed_total")); f != 0 {
		t.Fatalf("%v failed", f)
	}
	sameTraffic(t, l, 1)
}
