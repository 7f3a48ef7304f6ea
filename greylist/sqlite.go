package greylist

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver

	"github.com/portcullis-mail/portcullis/internal/private"
)

// DefaultDBPath is where the server keeps the greylisting state in its data directory.
func DefaultDBPath(dataDir string) string { return filepath.Join(dataDir, "greylist.db") }

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS triplets (key TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS triplets_last ON triplets(last);
CREATE TABLE IF NOT EXISTS clients (key TEXT PRIMARY KEY, count INTEGER NOT NULL, last INTEGER NOT NULL) WITHOUT ROWID;
`

// SQLiteStore keeps the state in a SQLite file of one process. Losing the last commits in
// a crash only greylists some retries again, so commits are not synced (WAL,
// synchronous=OFF): a lookup costs no fsync. The process is the file's only writer, so
// what it read or wrote is kept in a bounded write-through cache, and a step costs one
// write and, for an entry not in the cache, one read. Opening the same file twice (a
// rule reload) shares one store.
type SQLiteStore struct {
	path string
	refs int // guarded by sqliteStores.mu
	db   *sql.DB
	mu   sync.Mutex // one step at a time: read, decide, write

	getT, putT, getC, putC *sql.Stmt
	triplets               map[string]cachedEntry
	clients                map[string]cachedClient

	sweepAt int64
}

type cachedEntry struct {
	e  Entry
	ok bool
}

type cachedClient struct {
	c  ClientEntry
	ok bool
}

// maxCached bounds each cache; a full cache is emptied (it refills from the file).
const maxCached = 100000

var sqliteStores = struct {
	mu sync.Mutex
	m  map[string]*SQLiteStore
}{m: map[string]*SQLiteStore{}}

// OpenSQLite opens (creating) the database at path, mode 0600, or shares the store
// already open on it; each OpenSQLite needs its Close.
func OpenSQLite(path string) (*SQLiteStore, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	sqliteStores.mu.Lock()
	defer sqliteStores.mu.Unlock()
	if s := sqliteStores.m[path]; s != nil {
		s.refs++
		return s, nil
	}
	if err := private.DB(path); err != nil {
		return nil, fmt.Errorf("greylist: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	s := &SQLiteStore{path: path, refs: 1, db: db, triplets: map[string]cachedEntry{}, clients: map[string]cachedClient{}}
	for _, st := range []struct {
		p *(*sql.Stmt)
		q string
	}{
		{&s.getT, `SELECT first, last FROM triplets WHERE key = ?`},
		{&s.putT, `INSERT INTO triplets(key, first, last) VALUES(?, ?, ?) ON CONFLICT(key) DO UPDATE SET first = excluded.first, last = excluded.last`},
		{&s.getC, `SELECT count, last FROM clients WHERE key = ?`},
		{&s.putC, `INSERT INTO clients(key, count, last) VALUES(?, ?, ?) ON CONFLICT(key) DO UPDATE SET count = excluded.count, last = excluded.last`},
	} {
		if *st.p, err = db.Prepare(st.q); err != nil {
			db.Close()
			return nil, fmt.Errorf("greylist: %s: %w", path, err)
		}
	}
	sqliteStores.m[path] = s
	return s, nil
}

// Triplet implements Store.
func (s *SQLiteStore) Triplet(ctx context.Context, key string, now int64, p Params) (Entry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now >= s.sweepAt {
		s.sweepAt = now + 3600
		if _, err := s.db.ExecContext(ctx, `DELETE FROM triplets WHERE ?1-last > ?2 OR (last-first < ?3 AND ?1-last > ?4)`, now, p.MaxAge, p.Delay, p.RetryWindow); err != nil {
			return Entry{}, false, fmt.Errorf("greylist: sqlite: %w", err)
		}
		if _, err := s.db.ExecContext(ctx, `DELETE FROM clients WHERE ?1-last > ?2`, now, p.MaxAge); err != nil {
			return Entry{}, false, fmt.Errorf("greylist: sqlite: %w", err)
		}
		clear(s.triplets)
		clear(s.clients)
	}
	c, cached := s.triplets[key]
	if !cached {
		err := s.getT.QueryRow(key).Scan(&c.e.First, &c.e.Last)
		c.ok = err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Entry{}, false, fmt.Errorf("greylist: sqlite: %w", err)
		}
	}
	next, passed := Step(c.e, c.ok, now, p)
	if _, err := s.putT.Exec(key, next.First, next.Last); err != nil {
		delete(s.triplets, key)
		return Entry{}, false, fmt.Errorf("greylist: sqlite: %w", err)
	}
	if len(s.triplets) >= maxCached {
		clear(s.triplets)
	}
	s.triplets[key] = cachedEntry{e: next, ok: true}
	return next, passed, nil
}

func (s *SQLiteStore) client(ctx context.Context, key string) (ClientEntry, bool, error) {
	if c, ok := s.clients[key]; ok {
		return c.c, c.ok, nil
	}
	var c ClientEntry
	err := s.getC.QueryRow(key).Scan(&c.Count, &c.Last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return c, false, fmt.Errorf("greylist: sqlite: %w", err)
	}
	if len(s.clients) >= maxCached {
		clear(s.clients)
	}
	s.clients[key] = cachedClient{c: c, ok: err == nil}
	return c, err == nil, nil
}

func (s *SQLiteStore) putClient(ctx context.Context, key string, c ClientEntry) error {
	_, err := s.putC.Exec(key, c.Count, c.Last)
	if err != nil {
		delete(s.clients, key)
		return fmt.Errorf("greylist: sqlite: %w", err)
	}
	s.clients[key] = cachedClient{c: c, ok: true}
	return nil
}

// ClientAllowed implements Store.
func (s *SQLiteStore) ClientAllowed(ctx context.Context, key string, now, threshold int64, p Params) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok, err := s.client(ctx, key)
	if err != nil {
		return false, err
	}
	allowed, next, changed := ClientCheck(c, ok, now, threshold, p)
	if changed {
		err = s.putClient(ctx, key, next)
	}
	return allowed, err
}

// ClientPassed implements Store.
func (s *SQLiteStore) ClientPassed(ctx context.Context, key string, now int64, p Params) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok, err := s.client(ctx, key)
	if err != nil {
		return err
	}
	if next, changed := ClientPass(c, ok, now, p); changed {
		return s.putClient(ctx, key, next)
	}
	return nil
}

// Close implements Store: the last Close of a shared store closes the file.
func (s *SQLiteStore) Close() error {
	sqliteStores.mu.Lock()
	defer sqliteStores.mu.Unlock()
	if s.refs--; s.refs > 0 {
		return nil
	}
	delete(sqliteStores.m, s.path)
	return s.db.Close()
}
