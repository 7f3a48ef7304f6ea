package decisionlog

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// bareLog is a SQLite log without its writer and pruner goroutines: the test calls
// write itself, as the writer would, and may then look at the writer's state.
func bareLog(t *testing.T, cfg Config) *Log {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "d.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(OFF)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l := &Log{cfg: cfg, db: db, log: slog.New(slog.DiscardHandler), pending: map[outcomeKey]pendingOutcome{},
		held: map[outcomeKey]*heldRecord{}, m: newMetrics(nil)}
	if err := l.createSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestHeldQueueBound: the records whose outcome came while held leave the held set at
// once, but their entries in heldQ stayed until they reached its front; behind one
// record still waiting (a remote delivery), that was every record held since, a rate ×
// OutcomeWait of entries (each keeping its queue id and recipient) whatever MaxHeld
// says. They must not outnumber the records held by much.
func TestHeldQueueBound(t *testing.T) {
	defer func(n int) { heldQSlack = n }(heldQSlack)
	heldQSlack = 64 // the test's few records, rather than production's 1024
	l := bareLog(t, Config{OutcomeWait: time.Hour, MaxHeld: 20000, BatchSize: 1000})
	rec := func(i int) *Record {
		return &Record{Recipient: fmt.Sprintf("u%d@example.org", i), Verdict: VerdictAccept, QueueID: fmt.Sprint("Q", i), Size: 100}
	}
	// the one record whose outcome does not come
	l.write([]item{{rec: rec(0)}}, false)
	const batches, per = 10, 40
	for b := range batches {
		var batch []item
		for i := b*per + 1; i <= (b+1)*per; i++ {
			batch = append(batch, item{rec: rec(i)})
		}
		for i := b*per + 1; i <= (b+1)*per; i++ {
			batch = append(batch, item{out: &Outcome{QueueID: fmt.Sprint("Q", i), Recipient: fmt.Sprintf("u%d@example.org", i), Outcome: OutcomeDelivered}})
		}
		l.write(batch, false)
	}
	if len(l.held) != 1 || l.held[outcomeKey{"Q0", "u0@example.org"}] == nil {
		t.Fatalf("%d held, want the first record alone", len(l.held))
	}
	if n := len(l.heldQ); n > 2*len(l.held)+128 {
		t.Fatalf("heldQ has %d entries for %d held records", n, len(l.held))
	}
	// the record still held keeps its place, and the end writes it
	if d, ok := l.nextDeadline(); !ok || d != l.held[outcomeKey{"Q0", "u0@example.org"}].deadline {
		t.Fatalf("next deadline %v %v", d, ok)
	}
	l.write(nil, true)
	var n, delivered int
	if err := l.db.QueryRow("SELECT COUNT(*), COALESCE(SUM(outcome = 'delivered'), 0) FROM decisions").Scan(&n, &delivered); err != nil {
		t.Fatal(err)
	}
	if n != batches*per+1 || delivered != batches*per || len(l.heldQ) != 0 {
		t.Fatalf("%d records, %d delivered, %d in heldQ", n, delivered, len(l.heldQ))
	}
}
