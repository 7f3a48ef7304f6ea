package greylist

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

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

// SQLiteStore keeps the state in a SQLite file of one process, which is the file's only
// writer: what it read or changed is kept in a bounded cache, and changes are written
// behind, in one transaction every flushInterval (and on Close). A step costs a map
// lookup, or one read for an entry not cached. What a crash loses (the last interval's
// changes, and commits not synced: WAL, synchronous=OFF) only greylists some retries
// again. Opening the same file twice (a rule reload) shares one store.
type SQLiteStore struct {
	path string
	refs int // guarded by sqliteStores.mu
	db   *sql.DB

	mu       sync.Mutex // guards what follows; one step at a time: read, decide, change
	triplets map[string]cachedEntry
	clients  map[string]cachedClient
	// dirty are the changes not yet written; writing, those being written now.
	dirtyT, writingT map[string]Entry
	dirtyC, writingC map[string]ClientEntry
	sweepAt          int64
	// maxDirty bounds the changes kept for the next flush after a failed write (a
	// full disk): past it they are forgotten, as a crash would.
	maxDirty int

	getT, getC *sql.Stmt
	flushMu    sync.Mutex // one write-behind at a time
	stop       chan struct{}
	done       chan struct{}
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

// flushInterval is how long a change waits to be written.
const flushInterval = 200 * time.Millisecond

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
	db, err := sql.Open("sqlite", private.DSN(path, "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)"))
	if err != nil {
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	s := &SQLiteStore{path: path, refs: 1, db: db,
		triplets: map[string]cachedEntry{}, clients: map[string]cachedClient{},
		dirtyT: map[string]Entry{}, dirtyC: map[string]ClientEntry{}, maxDirty: maxCached,
		stop: make(chan struct{}), done: make(chan struct{})}
	if s.getT, err = db.Prepare(`SELECT first, last FROM triplets WHERE key = ?`); err == nil {
		s.getC, err = db.Prepare(`SELECT count, last FROM clients WHERE key = ?`)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("greylist: %s: %w", path, err)
	}
	go s.flusher()
	sqliteStores.m[path] = s
	return s, nil
}

func (s *SQLiteStore) flusher() {
	defer close(s.done)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Flush(); err != nil {
				slog.Warn("greylist: writing the state failed; it stays in memory", "db", s.path, "err", err)
			}
		}
	}
}

// Flush writes the pending changes now (the store does it every 200ms by itself). After
// a failed write they are kept for the next one, at most maxCached of each kind.
func (s *SQLiteStore) Flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	if len(s.dirtyT) == 0 && len(s.dirtyC) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.writingT, s.dirtyT = s.dirtyT, map[string]Entry{}
	s.writingC, s.dirtyC = s.dirtyC, map[string]ClientEntry{}
	wt, wc := s.writingT, s.writingC
	s.mu.Unlock()

	err := s.write(wt, wc)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Keep them for the next flush, unless newer changes replaced them, up to
		// maxDirty: a write that keeps failing must not grow memory without end.
		for k, e := range wt {
			if _, ok := s.dirtyT[k]; !ok && len(s.dirtyT) < s.maxDirty {
				s.dirtyT[k] = e
			}
		}
		for k, c := range wc {
			if _, ok := s.dirtyC[k]; !ok && len(s.dirtyC) < s.maxDirty {
				s.dirtyC[k] = c
			}
		}
	}
	s.writingT, s.writingC = nil, nil
	return err
}

func (s *SQLiteStore) write(wt map[string]Entry, wc map[string]ClientEntry) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("greylist: sqlite: %w", err)
	}
	defer tx.Rollback()
	putT, err := tx.Prepare(`INSERT INTO triplets(key, first, last) VALUES(?, ?, ?) ON CONFLICT(key) DO UPDATE SET first = excluded.first, last = excluded.last`)
	if err != nil {
		return fmt.Errorf("greylist: sqlite: %w", err)
	}
	for k, e := range wt {
		if _, err := putT.Exec(k, e.First, e.Last); err != nil {
			return fmt.Errorf("greylist: sqlite: %w", err)
		}
	}
	putC, err := tx.Prepare(`INSERT INTO clients(key, count, last) VALUES(?, ?, ?) ON CONFLICT(key) DO UPDATE SET count = excluded.count, last = excluded.last`)
	if err != nil {
		return fmt.Errorf("greylist: sqlite: %w", err)
	}
	for k, c := range wc {
		if _, err := putC.Exec(k, c.Count, c.Last); err != nil {
			return fmt.Errorf("greylist: sqlite: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("greylist: sqlite: %w", err)
	}
	return nil
}

// triplet returns the current entry of key: cached, pending or in the file.
func (s *SQLiteStore) triplet(key string) (Entry, bool, error) {
	if c, ok := s.triplets[key]; ok {
		return c.e, c.ok, nil
	}
	if e, ok := s.dirtyT[key]; ok {
		return e, true, nil
	}
	if e, ok := s.writingT[key]; ok {
		return e, true, nil
	}
	var e Entry
	err := s.getT.QueryRow(key).Scan(&e.First, &e.Last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return e, false, fmt.Errorf("greylist: sqlite: %w", err)
	}
	return e, err == nil, nil
}

// Triplet implements Store.
func (s *SQLiteStore) Triplet(ctx context.Context, key string, now int64, p Params) (Entry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now >= s.sweepAt {
		if err := s.sweep(ctx, now, p); err != nil {
			return Entry{}, false, err
		}
	}
	e, ok, err := s.triplet(key)
	if err != nil {
		return Entry{}, false, err
	}
	next, passed := Step(e, ok, now, p)
	if len(s.triplets) >= maxCached {
		clear(s.triplets)
	}
	s.triplets[key] = cachedEntry{e: next, ok: true}
	s.dirtyT[key] = next
	return next, passed, nil
}

// sweep deletes what postgrey's maintenance would, at most once an hour of the store's
// clock (pending changes are fresh: they are not affected).
func (s *SQLiteStore) sweep(ctx context.Context, now int64, p Params) error {
	s.sweepAt = now + 3600
	if _, err := s.db.ExecContext(ctx, `DELETE FROM triplets WHERE ?1-last > ?2 OR (last-first < ?3 AND ?1-last > ?4)`, now, p.MaxAge, p.Delay, p.RetryWindow); err != nil {
		return fmt.Errorf("greylist: sqlite: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM clients WHERE ?1-last > ?2`, now, p.MaxAge); err != nil {
		return fmt.Errorf("greylist: sqlite: %w", err)
	}
	clear(s.triplets)
	clear(s.clients)
	return nil
}

func (s *SQLiteStore) client(key string) (ClientEntry, bool, error) {
	if c, ok := s.clients[key]; ok {
		return c.c, c.ok, nil
	}
	if c, ok := s.dirtyC[key]; ok {
		return c, true, nil
	}
	if c, ok := s.writingC[key]; ok {
		return c, true, nil
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

func (s *SQLiteStore) putClient(key string, c ClientEntry) {
	s.clients[key] = cachedClient{c: c, ok: true}
	s.dirtyC[key] = c
}

// ClientAllowed implements Store.
func (s *SQLiteStore) ClientAllowed(ctx context.Context, key string, now, threshold int64, p Params) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok, err := s.client(key)
	if err != nil {
		return false, err
	}
	allowed, next, changed := ClientCheck(c, ok, now, threshold, p)
	if changed {
		s.putClient(key, next)
	}
	return allowed, nil
}

// ClientPassed implements Store.
func (s *SQLiteStore) ClientPassed(ctx context.Context, key string, now int64, p Params) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok, err := s.client(key)
	if err != nil {
		return err
	}
	if next, changed := ClientPass(c, ok, now, p); changed {
		s.putClient(key, next)
	}
	return nil
}

// Close implements Store: the last Close of a shared store writes the pending changes
// and closes the file.
func (s *SQLiteStore) Close() error {
	sqliteStores.mu.Lock()
	defer sqliteStores.mu.Unlock()
	if s.refs--; s.refs > 0 {
		return nil
	}
	delete(sqliteStores.m, s.path)
	close(s.stop)
	<-s.done
	err := s.Flush()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// lazySQLite opens the SQLite store at its first use; a failed open is retried at the next.
type lazySQLite struct {
	path string
	mu   sync.Mutex
	s    *SQLiteStore
}

func (l *lazySQLite) store() (*SQLiteStore, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		s, err := OpenSQLite(l.path)
		if err != nil {
			return nil, err
		}
		l.s = s
	}
	return l.s, nil
}

// Triplet implements Store.
func (l *lazySQLite) Triplet(ctx context.Context, key string, now int64, p Params) (Entry, bool, error) {
	s, err := l.store()
	if err != nil {
		return Entry{}, false, err
	}
	return s.Triplet(ctx, key, now, p)
}

// ClientAllowed implements Store.
func (l *lazySQLite) ClientAllowed(ctx context.Context, key string, now, threshold int64, p Params) (bool, error) {
	s, err := l.store()
	if err != nil {
		return false, err
	}
	return s.ClientAllowed(ctx, key, now, threshold, p)
}

// ClientPassed implements Store.
func (l *lazySQLite) ClientPassed(ctx context.Context, key string, now int64, p Params) error {
	s, err := l.store()
	if err != nil {
		return err
	}
	return s.ClientPassed(ctx, key, now, p)
}

// Close implements Store.
func (l *lazySQLite) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return nil
	}
	err := l.s.Close()
	l.s = nil
	return err
}
