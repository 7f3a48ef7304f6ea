package bayes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultDBPath is where the global token database lives under a data directory.
func DefaultDBPath(dataDir string) string { return filepath.Join(dataDir, "bayes", "global.db") }

// UserDBPath returns the per-user database for user next to the global database
// global: <dir>/users/<user>.db, with the user name reduced to a safe file name that
// only this user's name reduces to (two users never share a database).
func UserDBPath(global, user string) (string, error) {
	name := safeName(user)
	if name == "" {
		return "", fmt.Errorf("bayes: invalid user name %q", user)
	}
	dir := filepath.Join(filepath.Dir(global), "users")
	// Before, every other byte became '_', so "a#b" and "a_b" shared a_b.db. A name whose
	// only such byte was '_' itself keeps its old file, which was its own or the shared
	// one: the underscore is the common case of the two.
	if legacy := legacyName(user); legacy != name && legacy == strings.ToLower(strings.TrimSpace(user)) {
		if _, err := os.Stat(filepath.Join(dir, legacy+".db")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, name+".db")); errors.Is(err, os.ErrNotExist) {
				return filepath.Join(dir, legacy+".db"), nil
			}
		}
	}
	return filepath.Join(dir, name+".db"), nil
}

// safeName keeps letters, digits, '@', '-', '+' and '.' (not first) of the lowercased
// name and writes every other byte as '_' and two hex digits, '_' included, so that the
// file name is as unique as the user name.
func safeName(user string) string {
	user = strings.ToLower(strings.TrimSpace(user))
	if len(user) > 200 {
		return ""
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 0, len(user))
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '@', c == '-', c == '+':
			b = append(b, c)
		case c == '.' && len(b) > 0:
			b = append(b, c)
		default:
			b = append(b, '_', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

// legacyName is the file name earlier versions gave user: every byte safeName escapes
// became '_'.
func legacyName(user string) string {
	user = strings.ToLower(strings.TrimSpace(user))
	b := []byte(user)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '@', c == '-', c == '_', c == '+':
		case c == '.' && i > 0:
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// userStores keeps per-user SQLite stores open, at most max at a time; a store in use
// is never closed under its user.
type userStores struct {
	global string
	max    int
	mu     sync.Mutex
	open   map[string]*userStore
}

type userStore struct {
	s        *SQLiteStore
	refs     int
	lastUsed time.Time
}

// acquire returns the open store of user, opening it if its file exists. It returns
// nil, nil when the user has no database. release must be called when done.
func (u *userStores) acquire(ctx context.Context, user string) (*SQLiteStore, func(), error) {
	path, err := UserDBPath(u.global, user)
	if err != nil {
		return nil, nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	us, ok := u.open[path]
	if !ok {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil
		}
		s, err := OpenSQLite(ctx, path, SQLiteOptions{})
		if err != nil {
			return nil, nil, err
		}
		u.evictLocked()
		us = &userStore{s: s}
		u.open[path] = us
	}
	us.refs++
	us.lastUsed = time.Now()
	return us.s, func() {
		u.mu.Lock()
		us.refs--
		u.mu.Unlock()
	}, nil
}

func (u *userStores) evictLocked() {
	for len(u.open) >= u.max {
		var oldest string
		var t time.Time
		for p, us := range u.open {
			if us.refs == 0 && (oldest == "" || us.lastUsed.Before(t)) {
				oldest, t = p, us.lastUsed
			}
		}
		if oldest == "" {
			return // all in use: go over the limit rather than block
		}
		u.open[oldest].s.Close()
		delete(u.open, oldest)
	}
}

func (u *userStores) close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for p, us := range u.open {
		errs = append(errs, us.s.Close())
		delete(u.open, p)
	}
	return errors.Join(errs...)
}
