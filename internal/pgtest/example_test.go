package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

func TestStart(t *testing.T) {
	dsn := pgtest.Start(t)
	db := pgtest.NewDatabase(t, dsn)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT 40 + 2").Scan(&n); err != nil || n != 42 {
		t.Fatalf("SELECT: %d %v", n, err)
	}
}

// A test gets a server of its own, and a fresh database per sub-test.
func ExampleStart() {
	var t *testing.T // the test's
	dsn := pgtest.Start(t)
	db := pgtest.NewDatabase(t, dsn)
	_ = db // postgres://portcullis@127.0.0.1:PORT/tPID_1?sslmode=disable
}
