package decisionlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestTransient: what the writer tries again. TestOutcomeDeadlock provokes PostgreSQL's
// deadlock_detected through the writer itself.
func TestTransient(t *testing.T) {
	ctx := context.Background()
	// SQLite: a second writer, without a busy timeout, fails at once with SQLITE_BUSY
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "d.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c1, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c1.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer c1.ExecContext(ctx, "ROLLBACK")
	_, err = c2.ExecContext(ctx, "BEGIN IMMEDIATE")
	if err == nil || !transient(err) || !transient(fmt.Errorf("counters: %w", err)) {
		t.Fatalf("SQLite busy: %v, transient %v", err, transient(err))
	}
	// a constraint violation is no conflict: trying it again fails again
	if _, err := c1.ExecContext(ctx, "CREATE TABLE u (k INTEGER PRIMARY KEY); INSERT INTO u VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.ExecContext(ctx, "INSERT INTO u VALUES (1)"); err == nil || transient(err) {
		t.Fatalf("SQLite constraint: %v, transient %v", err, transient(err))
	}
	for code, want := range map[string]bool{"40P01": true, "40001": true, "23505": false, "57014": false} {
		if got := transient(fmt.Errorf("x: %w", &pgconn.PgError{Code: code})); got != want {
			t.Errorf("PostgreSQL %s: transient %v", code, got)
		}
	}
	if transient(errors.New("disk I/O error")) || transient(context.DeadlineExceeded) {
		t.Fatal("a plain error is transient")
	}
}
