package bayes

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver

	"github.com/portcullis-mail/portcullis/internal/private"
)

// SQLiteOptions tunes an SQLite store.
type SQLiteOptions struct {
	// RefreshInterval is how often a Lookup checks whether another process changed
	// the database (and reloads the cache in the background). Default 5s; <0 never.
	RefreshInterval time.Duration
	// NoSnapshot neither reads nor writes the token snapshot (PATH.snap) that lets
	// a starting process skip reading the token table through SQLite.
	NoSnapshot bool
}

// SQLiteStore is the embedded default Store: token counts in an SQLite database (WAL
// mode), with the whole token table cached in memory so that a lookup costs a map
// access. Apply writes the database first and the cache after, so lookups are never
// blocked by disk I/O; a change made by another process (such as `portcullis bayes
// train` while the server runs) is picked up within RefreshInterval.
type SQLiteStore struct {
	path string
	db   *sql.DB
	opt  SQLiteOptions

	writeMu sync.Mutex // serializes Apply, Prune and reloads
	mu      sync.RWMutex
	t       *table
	closed  bool

	lastCheck   atomic.Int64 // unix nanos of the last data_version check
	dataVersion int64
	reloading   atomic.Bool

	// gen is the database generation the cache reflects (genOK: known exactly, that is
	// no other process wrote between our load and our writes); dirty says this store
	// wrote since the snapshot was last written. Guarded by writeMu.
	gen   uint64
	genOK bool
	dirty bool
}

const schema = `
CREATE TABLE IF NOT EXISTS tokens (h INTEGER PRIMARY KEY, c INTEGER NOT NULL, day INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (d INTEGER PRIMARY KEY, class INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('nspam', '0'), ('nham', '0'), ('schema', '2'), ('gen', '0');
`

// OpenSQLite opens (creating if needed) the token database at path and loads it.
func OpenSQLite(ctx context.Context, path string, opt SQLiteOptions) (*SQLiteStore, error) {
	if opt.RefreshInterval == 0 {
		opt.RefreshInterval = 5 * time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bayes: create directory for %s: %w", path, err)
	}
	// Tokens come from users' mail: readable by the owner only, -wal and -shm too.
	if err := private.DB(path); err != nil {
		return nil, fmt.Errorf("bayes: %w", err)
	}
	dsn := private.DSN(path, "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("bayes: open %s: %w", path, err)
	}
	// one connection: writes are serialized anyway, and data_version then reports
	// only other processes' commits
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("bayes: initialise %s: %w", path, err)
	}
	var version string
	if err := db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'schema'`).Scan(&version); err != nil || version != "2" {
		db.Close()
		return nil, fmt.Errorf("bayes: %s has token schema %q, want 2 (from an older version: retrain into a new file)", path, version)
	}
	s := &SQLiteStore{path: path, db: db, opt: opt}
	t, v, gen, err := s.load(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.t, s.dataVersion, s.gen, s.genOK = t, v, gen, true
	s.lastCheck.Store(time.Now().UnixNano())
	return s, nil
}

// Path returns the database file.
func (s *SQLiteStore) Path() string { return s.path }

// load reads the token table: from the snapshot beside the database when it is of the
// database's current generation, else from SQLite (and then rewrites the snapshot).
func (s *SQLiteStore) load(ctx context.Context) (*table, int64, uint64, error) {
	t, v, gen, fromSQL, err := s.loadTx(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	if fromSQL && !s.opt.NoSnapshot {
		// best effort: the snapshot is only a cache (the directory may be read-only)
		_ = writeSnapshot(s.path, t, gen)
	}
	return t, v, gen, nil
}

func (s *SQLiteStore) loadTx(ctx context.Context) (t *table, v int64, gen uint64, fromSQL bool, err error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("bayes: load %s: %w", s.path, err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return nil, 0, 0, false, fmt.Errorf("bayes: load %s: %w", s.path, err)
	}
	var ns, nh, g int64
	if err := tx.QueryRowContext(ctx, "SELECT (SELECT v FROM meta WHERE k='nspam'), (SELECT v FROM meta WHERE k='nham'), (SELECT v FROM meta WHERE k='gen')").Scan(&ns, &nh, &g); err != nil {
		return nil, 0, 0, false, fmt.Errorf("bayes: load %s: %w", s.path, err)
	}
	gen = uint64(g)
	if snap, ok := s.readSnapshot(gen); ok && snap.totals == (Totals{Spam: uint32(ns), Ham: uint32(nh)}) {
		return snap, v, gen, false, nil
	}
	t = newTable()
	// counts are packed into one column (spam << 32 | ham): loading decodes one
	// integer per token, which measured twice as fast as separate columns. Days are
	// not read: this store keeps them only in the database (Stats and Prune query
	// them there), and reading them made this load a third slower.
	rows, err := tx.QueryContext(ctx, "SELECT h, c FROM tokens")
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("bayes: load %s: %w", s.path, err)
	}
	for rows.Next() {
		var h, c int64
		if err := rows.Scan(&h, &c); err != nil {
			rows.Close()
			return nil, 0, 0, false, fmt.Errorf("bayes: load %s: %w", s.path, err)
		}
		t.tokens.set(uint64(h), entry{spam: uint32(uint64(c) >> 32), ham: uint32(c)})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, 0, false, fmt.Errorf("bayes: load %s: %w", s.path, err)
	}
	// the seen table is only needed to train: loadSeen reads it on the first Apply
	t.seenLoaded = false
	t.totals = Totals{Spam: uint32(ns), Ham: uint32(nh)}
	return t, v, gen, true, nil
}

// maybeRefresh reloads the cache in the background when another process committed.
func (s *SQLiteStore) maybeRefresh() {
	if s.opt.RefreshInterval < 0 {
		return
	}
	now := time.Now().UnixNano()
	last := s.lastCheck.Load()
	if now-last < int64(s.opt.RefreshInterval) || !s.lastCheck.CompareAndSwap(last, now) {
		return
	}
	if !s.reloading.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.reloading.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		var v int64
		if err := s.db.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil || v == s.dataVersion {
			return
		}
		t, v, gen, err := s.load(ctx)
		if err != nil {
			return
		}
		s.mu.Lock()
		if !s.closed {
			s.t, s.dataVersion = t, v
			s.gen, s.genOK, s.dirty = gen, true, false
		}
		s.mu.Unlock()
	}()
}

func (s *SQLiteStore) Lookup(ctx context.Context, keys []uint64, out []Counts) (Totals, error) {
	s.maybeRefresh()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Totals{}, ErrClosed
	}
	return s.t.lookup(keys, out), nil
}

func (s *SQLiteStore) Apply(ctx context.Context, ups []Update) ([]Outcome, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.loadSeen(ctx); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	p := s.t.plan(ups)
	s.mu.RUnlock()
	if err := s.write(ctx, p); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.t.apply(p)
	s.mu.Unlock()
	return p.outcomes, nil
}

// loadSeen reads the digests of trained messages once; writeMu must be held.
func (s *SQLiteStore) loadSeen(ctx context.Context) error {
	s.mu.RLock()
	done, closed := s.t.seenLoaded, s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if done {
		return nil
	}
	seen := map[uint64]trained{}
	rows, err := s.db.QueryContext(ctx, "SELECT d, class FROM seen")
	if err != nil {
		return fmt.Errorf("bayes: load %s: %w", s.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d, c int64
		if err := rows.Scan(&d, &c); err != nil {
			return fmt.Errorf("bayes: load %s: %w", s.path, err)
		}
		seen[uint64(d)] = trained(c)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("bayes: load %s: %w", s.path, err)
	}
	s.mu.Lock()
	s.t.seen, s.t.seenLoaded = seen, true
	s.mu.Unlock()
	return nil
}

func (s *SQLiteStore) write(ctx context.Context, p *plan) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("bayes: write %s: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	up, err := tx.PrepareContext(ctx, `INSERT INTO tokens (h, c, day) VALUES (?1, (max(0, ?2) << 32) | max(0, ?3), ?4)
		ON CONFLICT (h) DO UPDATE SET
			c = (min(2147483647, max(0, (c >> 32) + ?2)) << 32) | min(4294967295, max(0, (c & 4294967295) + ?3)),
			day = max(day, ?4)`)
	if err != nil {
		return fmt.Errorf("bayes: write %s: %w", s.path, err)
	}
	defer up.Close()
	del, err := tx.PrepareContext(ctx, `DELETE FROM tokens WHERE h = ? AND c = 0`)
	if err != nil {
		return fmt.Errorf("bayes: write %s: %w", s.path, err)
	}
	defer del.Close()
	// in key order (as SQLite orders the signed rowid), so the B-tree is written
	// sequentially rather than at random
	keys := make([]int64, 0, len(p.tokens))
	for h := range p.tokens {
		keys = append(keys, int64(h))
	}
	slices.Sort(keys)
	for _, k := range keys {
		h := uint64(k)
		d := p.tokens[h]
		if d.spam == 0 && d.ham == 0 {
			continue
		}
		if _, err := up.ExecContext(ctx, int64(h), d.spam, d.ham, d.day); err != nil {
			return fmt.Errorf("bayes: write %s: %w", s.path, err)
		}
		if d.spam < 0 || d.ham < 0 {
			if _, err := del.ExecContext(ctx, int64(h)); err != nil {
				return fmt.Errorf("bayes: write %s: %w", s.path, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET v = max(0, CAST(v AS INTEGER) + ?) WHERE k = 'nspam'`, p.dSpam); err != nil {
		return fmt.Errorf("bayes: write %s: %w", s.path, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET v = max(0, CAST(v AS INTEGER) + ?) WHERE k = 'nham'`, p.dHam); err != nil {
		return fmt.Errorf("bayes: write %s: %w", s.path, err)
	}
	for d, c := range p.seen {
		if c == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM seen WHERE d = ?`, int64(d))
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO seen (d, class) VALUES (?, ?) ON CONFLICT (d) DO UPDATE SET class = excluded.class`, int64(d), int(c))
		}
		if err != nil {
			return fmt.Errorf("bayes: write %s: %w", s.path, err)
		}
	}
	// last before the commit: bumpGen updates s.gen, which a commit failure undoes
	if err := s.bumpGen(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		s.genOK = false
		return fmt.Errorf("bayes: commit %s: %w", s.path, err)
	}
	return nil
}

func (s *SQLiteStore) readSnapshot(gen uint64) (*table, bool) {
	if s.opt.NoSnapshot {
		return nil, false
	}
	return readSnapshot(s.path, gen)
}

// bumpGen increments the database generation in tx (writeMu held), which makes every
// snapshot stale, and notes whether the cache still knows its generation exactly:
// only if no other process wrote since our load or last write.
func (s *SQLiteStore) bumpGen(ctx context.Context, tx *sql.Tx) error {
	var g int64
	if err := tx.QueryRowContext(ctx, `UPDATE meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'gen' RETURNING CAST(v AS INTEGER)`).Scan(&g); err != nil {
		return fmt.Errorf("bayes: write %s: %w", s.path, err)
	}
	s.genOK = s.genOK && uint64(g) == s.gen+1
	s.gen = uint64(g)
	s.dirty = true
	return nil
}

func (s *SQLiteStore) Stats(ctx context.Context) (Stats, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return Stats{}, ErrClosed
	}
	st := s.t.stats()
	s.mu.RUnlock()
	// days and the seen table live only in the database
	var oldest, seen int64
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(min(day), 0), (SELECT count(*) FROM seen) FROM tokens`).Scan(&oldest, &seen); err != nil {
		return Stats{}, fmt.Errorf("bayes: stats %s: %w", s.path, err)
	}
	st.OldestDay, st.Messages = uint16(oldest), int(seen)
	return st, nil
}

func (s *SQLiteStore) Prune(ctx context.Context, cfg PruneConfig) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	s.mu.RUnlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("bayes: prune %s: %w", s.path, err)
	}
	defer tx.Rollback()
	var hs []uint64
	rows, err := tx.QueryContext(ctx, `SELECT h FROM tokens WHERE (c >> 32) + (c & 4294967295) <= ? AND day < ?`,
		cfg.MinCount, dayOf(time.Now().Add(-cfg.MaxAge)))
	if err != nil {
		return 0, fmt.Errorf("bayes: prune %s: %w", s.path, err)
	}
	for rows.Next() {
		var h int64
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return 0, fmt.Errorf("bayes: prune %s: %w", s.path, err)
		}
		hs = append(hs, uint64(h))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("bayes: prune %s: %w", s.path, err)
	}
	del, err := tx.PrepareContext(ctx, `DELETE FROM tokens WHERE h = ?`)
	if err != nil {
		return 0, fmt.Errorf("bayes: prune %s: %w", s.path, err)
	}
	defer del.Close()
	for _, h := range hs {
		if _, err := del.ExecContext(ctx, int64(h)); err != nil {
			return 0, fmt.Errorf("bayes: prune %s: %w", s.path, err)
		}
	}
	if err := s.bumpGen(ctx, tx); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		s.genOK = false
		return 0, fmt.Errorf("bayes: prune %s: %w", s.path, err)
	}
	s.mu.Lock()
	for _, h := range hs {
		s.t.tokens.del(h)
	}
	s.mu.Unlock()
	return len(hs), nil
}

func (s *SQLiteStore) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = ?`, "x:"+key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("bayes: read meta %s: %w", s.path, err)
	}
	return v, nil
}

func (s *SQLiteStore) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, "x:"+key, value)
	if err != nil {
		return fmt.Errorf("bayes: write meta %s: %w", s.path, err)
	}
	return nil
}

// Close writes the snapshot if this store trained (so that the next process starts
// fast) and closes the database.
func (s *SQLiteStore) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	t := s.t
	s.mu.Unlock()
	if s.dirty && s.genOK && !s.opt.NoSnapshot {
		// best effort, as in load: the snapshot is only a cache
		_ = writeSnapshot(s.path, t, s.gen)
	}
	return s.db.Close()
}
