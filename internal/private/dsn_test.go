package private_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/portcullis-mail/portcullis/internal/private"
)

// A database named with '#', '?' or '%' is opened at exactly its path, with its pragmas
// (SQLite's URI parsing cut such a path, and two users then shared ".../a").
func TestDSNOpensExactlyThePath(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a#b.db", "a?b.db", "a%23b.db", "a b.db"} {
		path := filepath.Join(dir, name)
		db, err := sql.Open("sqlite", private.DSN(path, "_pragma=journal_mode(WAL)"))
		if err != nil {
			t.Fatal(err)
		}
		var mode string
		if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("%s: journal_mode %q %v: the pragmas were lost", name, mode, err)
		}
		db.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: not created at its path: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("a database was cut to \"a\"")
	}
}
