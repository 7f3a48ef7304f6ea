package decisionlog_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// TestPostgres runs the suite against a real PostgreSQL server, a fresh database per
// sub-test.
func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	runSuite(t, pgOpener(pgtest.Start(t)))
}

// pgOpener opens fresh logs in new databases of server.
func pgOpener(server string) opener {
	return func(t *testing.T, cfg decisionlog.Config, deps decisionlog.Deps) (*decisionlog.Log, func() func()) {
		t.Helper()
		cfg.Postgres = pgtest.NewDatabase(t, server)
		l, err := decisionlog.Open(context.Background(), cfg, deps)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		hold := func() func() {
			ctx := context.Background()
			c, err := pgx.Connect(ctx, cfg.Postgres)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			return func() {
				tx.Rollback(ctx)
				c.Close(ctx)
			}
		}
		return l, hold
	}
}

// Several front-end nodes open the same database at once and share one log.
func TestPostgresSharedByNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	const nodes = 4
	logs := make([]*decisionlog.Log, nodes)
	errs := make(chan error, nodes)
	for i := range nodes {
		go func() {
			var err error
			logs[i], err = decisionlog.Open(context.Background(), decisionlog.Config{Postgres: dsn}, decisionlog.Deps{})
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range logs {
		defer l.Close()
		l.Add(decisionlog.Record{Recipient: "bob@example.org", Session: fmt.Sprint(i), Verdict: "accept", QueueID: fmt.Sprintf("q%d", i)})
		flush(t, l)
	}
	// an outcome reported by another node joins too
	logs[0].SetOutcome(decisionlog.Outcome{QueueID: "q3", Recipient: "bob@example.org", Outcome: "delivered"})
	flush(t, logs[0])
	got := query(t, logs[1], decisionlog.Filter{Sort: decisionlog.SortOldest})
	if len(got) != nodes || got[3].Outcome != "delivered" {
		t.Fatalf("shared log: %+v", got)
	}
}
