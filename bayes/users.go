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
// global: <dir>/users/<user>.db, with the user name reduced to a safe file name.
func UserDBPath(global, user string) (string, error) {
	name := safeName(user)
	if name == "" {
		return "", fmt.Errorf("bayes: invalid user name %q", user)
	}
	return filepath.Join(filepath.Dir(global), "users", name+".db"), nil
}

func safeName(user string) string {
	user = strings.ToLower(strings.TrimSpace(user))
	if len(user) > 200 {
		return ""
	}
	b := make([]byte, 0, len(user))
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '@', c == '-', c == '_', c == '+':
			b = append(b, c)
		case c == '.' && len(b) > 0:
			b = append(b, c)
		default:
			b = append(b, '_')
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
