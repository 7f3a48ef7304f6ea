package statedb_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/statedb"
)

var schema = statedb.Schema{
	SQLite:   `CREATE TABLE IF NOT EXISTS kv ("user" TEXT PRIMARY KEY, n INTEGER NOT NULL)`,
	Postgres: `CREATE TABLE IF NOT EXISTS kv ("user" TEXT PRIMARY KEY, n BIGINT NOT NULL)`,
	Lock:     42,
}

// exercise runs the same queries, with ? placeholders and a column named by a reserved
// word, on a database.
func exercise(t *testing.T, db *statedb.DB) {
	ctx := context.Background()
	for range 2 {
		if _, err := db.Exec(ctx, `INSERT INTO kv ("user", n) VALUES (?, ?) ON CONFLICT ("user") DO UPDATE SET n = kv.n + excluded.n`, "alice", int64(1)<<40); err != nil {
			t.Fatal(err)
		}
	}
	err := db.Tx(ctx, func(tx *statedb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO kv ("user", n) VALUES (?, ?)`, "bob", 1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := db.QueryRow(ctx, `SELECT n FROM kv WHERE "user" = ?`, "alice").Scan(&n); err != nil || n != 2<<40 {
		t.Fatalf("alice: %d %v", n, err)
	}
	rows, err := db.Query(ctx, `SELECT "user" FROM kv WHERE n < ? ORDER BY "user"`, int64(10))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var users []string
	for rows.Next() {
		var u string
		_ = rows.Scan(&u)
		users = append(users, u)
	}
	if len(users) != 1 || users[0] != "bob" {
		t.Fatalf("users: %v", users)
	}
}

func TestSQLite(t *testing.T) {
	db, err := statedb.Open(context.Background(), statedb.Config{Path: filepath.Join(t.TempDir(), "s.db")}, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Postgres() {
		t.Fatal("a SQLite database says PostgreSQL")
	}
	exercise(t, db)
}

// Several nodes open the same PostgreSQL database at once: the schema is created once,
// under the advisory lock, and every node works.
func TestPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	var wg sync.WaitGroup
	dbs := make([]*statedb.DB, 4)
	errs := make([]error, 4)
	for i := range dbs {
		wg.Go(func() {
			dbs[i], errs[i] = statedb.Open(context.Background(), statedb.Config{Path: "unused", Postgres: dsn}, schema)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	if !dbs[0].Postgres() {
		t.Fatal("a PostgreSQL database says SQLite")
	}
	exercise(t, dbs[0])
}
