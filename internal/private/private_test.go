package private_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/private"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestDB(t *testing.T) {
	old := syscall.Umask(0o022) // as a shell would leave it
	defer syscall.Umask(old)
	dir := t.TempDir()
	db := filepath.Join(dir, "new.db")
	if err := private.DB(db); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, db); m != 0o600 {
		t.Errorf("new database: %v", m)
	}
	// A database and its companions left readable by an older version.
	olddb := filepath.Join(dir, "old.db")
	for _, p := range []string{olddb, olddb + "-wal", olddb + "-shm"} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := private.DB(olddb); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{olddb, olddb + "-wal", olddb + "-shm"} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s: %v", filepath.Base(p), m)
		}
	}
	// Tighten keeps the owner's bits, also of a directory, and ignores what is missing.
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := private.Tighten(d); err != nil || mode(t, d) != 0o700 {
		t.Errorf("directory: %v %v", mode(t, d), err)
	}
	if err := private.Tighten(filepath.Join(dir, "missing")); err != nil {
		t.Error(err)
	}
}

func ExampleDB() {
	dir, _ := os.MkdirTemp("", "private")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "index.sqlite")
	if err := private.DB(path); err != nil { // then sql.Open("sqlite", path)
		panic(err)
	}
	fi, _ := os.Stat(path)
	fmt.Println(fi.Mode().Perm())
	// Output: -rw-------
}
