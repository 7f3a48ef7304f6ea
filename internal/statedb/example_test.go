package statedb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/portcullis-mail/portcullis/internal/statedb"
)

// A consumer opens its database with its schema in both dialects and writes each query
// once; with Config.Postgres set the same code runs on the shared PostgreSQL database.
func Example() {
	dir, _ := os.MkdirTemp("", "statedb-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := statedb.Open(ctx, statedb.Config{Path: filepath.Join(dir, "state.db")}, statedb.Schema{
		SQLite:   `CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at INTEGER NOT NULL)`,
		Postgres: `CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at BIGINT NOT NULL)`,
		Lock:     1,
	})
	if err != nil {
		panic(err)
	}
	defer db.Close()
	res, _ := db.Exec(ctx, `INSERT INTO seen (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, "ticket-1", 1700000000)
	first, _ := res.RowsAffected()
	res, _ = db.Exec(ctx, `INSERT INTO seen (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, "ticket-1", 1700000000)
	again, _ := res.RowsAffected()
	fmt.Println(first, again)
	// Output: 1 0
}
