package decisionlog_test

import (
	"context"
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
	server := pgtest.Start(t)
	runSuite(t, func(t *testing.T, cfg decisionlog.Config, deps decisionlog.Deps) (*decisionlog.Log, func() func()) {
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
	})
}
