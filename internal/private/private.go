// Package private makes the files portcullis keeps in its data directory readable by
// their owner only: a database is created with mode 0600 before SQLite opens it, so that
// SQLite, which gives its -wal, -shm and -journal files the mode of the database, never
// makes one readable by others; a database left readable by an older version is
// tightened.
package private

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
)

// Mode is the mode of every file portcullis keeps; directories are 0700.
const Mode fs.FileMode = 0o600

// companions are the files SQLite keeps beside a database.
var companions = []string{"-wal", "-shm", "-journal"}

// DB creates the database file path if it does not exist, with mode 0600, and takes
// the group and world permissions off it and its SQLite companions when they exist.
func DB(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, Mode)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	f.Close()
	for _, p := range append([]string{path}, companionsOf(path)...) {
		if err := Tighten(p); err != nil {
			return err
		}
	}
	return nil
}

func companionsOf(path string) []string {
	out := make([]string, len(companions))
	for i, c := range companions {
		out[i] = path + c
	}
	return out
}

// Tighten takes the group and world permissions off path, when it exists.
func Tighten(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, fi.Mode().Perm()&0o700); err != nil {
		return fmt.Errorf("make %s private: %w", path, err)
	}
	return nil
}

// DSN is the SQLite "file:" URI of the database at path with query (pragmas, without
// the '?'). The path is escaped: SQLite's URI parsing cuts a path at '#' or '?' and
// decodes '%', so that users "a#b" and "a?b" (RFC 5322 atext) would share ".../a" and the
// pragmas after it would be lost.
func DSN(path, query string) string {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath()
	if query != "" {
		dsn += "?" + query
	}
	return dsn
}
