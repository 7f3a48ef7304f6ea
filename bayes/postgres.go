package bayes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresOptions tunes a PostgreSQL store.
type PostgresOptions struct {
	// RefreshInterval is how often the background refresh reads what other nodes
	// trained. Default 30s; <0 never (a CLI run that only trains or reports).
	RefreshInterval time.Duration
	// Logger receives the refresh's failures and recoveries; nil means slog.Default().
	Logger *slog.Logger
}

// PostgresStore is the site-wide Store of the multi-node mode: every front-end and
// back-end keeps the whole token table in memory and classifies from it (a lookup is a
// map access, never a database round trip), and refreshes it from PostgreSQL every
// RefreshInterval by reading only the rows changed since its last refresh.
//
// Changes are tracked by a generation: every write transaction first increments
// bayes_state.gen, which locks that row until the commit, so writers (on any node) are
// serialised and commit in generation order; each token row it touches gets that
// generation. A reader that saw generation G therefore has everything up to G, and the
// rows of generation > G are exactly what changed since. Counts are changed by SQL
// increments (spam = spam + delta), never read and written back by the client, so
// trainers on several nodes add up exactly. A token whose counts fall to zero stays as
// a tombstone row (0, 0) so that the other nodes see it go; Prune turns rare old tokens
// into tombstones and deletes the tombstones of the previous prune, and bayes_state.purged
// tells a node that last refreshed before them to load the table in full.
//
// When PostgreSQL cannot be reached, Lookup goes on answering from the last table (the
// refresh logs the failure once, and the recovery), and Apply, Prune and Stats fail
// with an error that says so: training is not queued, since the message would then be
// lost with the process, and every caller (bayes train, the Junk moves, autolearn, the
// quarantine release) reports the error.
type PostgresStore struct {
	pool  *pgxpool.Pool
	opt   PostgresOptions
	log   *slog.Logger
	host  string
	dsn   string // for tests that reopen the store
	where string // Path

	writeMu sync.Mutex // serialises Apply, Prune and refreshes on this node
	mu      sync.RWMutex
	t       *table // tokens and totals only; seen stays in the database
	closed  bool
	gen     int64 // the generation t reflects; guarded by writeMu (written under mu too)

	down     atomic.Bool  // the last refresh failed (logged once)
	rowsRead atomic.Int64 // token rows read from the database, for tests and benchmarks

	bg     context.Context // cancelled by Close, so a refresh stuck on the network ends
	cancel context.CancelFunc
	done   chan struct{}
}

// pgSchemaLock serialises concurrent schema creation by several nodes starting at once
// (CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin).
const pgSchemaLock = 0x706f7274_62617931 // "portbay1"

const pgSchema = `
CREATE TABLE IF NOT EXISTS bayes_state (
	id boolean PRIMARY KEY DEFAULT true CHECK (id),
	schema integer NOT NULL,
	gen bigint NOT NULL,        -- generation of the last write
	purged bigint NOT NULL,     -- tombstones of generations <= purged are deleted
	prune_gen bigint NOT NULL,  -- generation of the last prune: the next one purges up to it
	nspam bigint NOT NULL,
	nham bigint NOT NULL
);
INSERT INTO bayes_state (schema, gen, purged, prune_gen, nspam, nham) VALUES (1, 0, 0, 0, 0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS bayes_tokens (
	h bigint PRIMARY KEY,
	spam bigint NOT NULL,
	ham bigint NOT NULL,
	day integer NOT NULL,
	gen bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS bayes_tokens_gen ON bayes_tokens (gen);
CREATE TABLE IF NOT EXISTS bayes_seen (d bigint PRIMARY KEY, class integer NOT NULL);
CREATE TABLE IF NOT EXISTS bayes_meta (k text PRIMARY KEY, v text NOT NULL);
`

// OpenPostgres connects to dsn, creates the tables if needed (bayes_state, bayes_tokens,
// bayes_seen, bayes_meta: they can share the directory's database), loads the whole
// token table and starts the background refresh.
func OpenPostgres(ctx context.Context, dsn string, opt PostgresOptions) (*PostgresStore, error) {
	if opt.RefreshInterval == 0 {
		opt.RefreshInterval = 30 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bayes: postgres connection string: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if cfg.MaxConns > 4 {
		cfg.MaxConns = 4 // a refresh, a trainer and Stats at most
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bayes: postgres %s: %w", cfg.ConnConfig.Host, err)
	}
	s := &PostgresStore{pool: pool, opt: opt, log: opt.Logger, host: cfg.ConnConfig.Host, dsn: dsn, t: newTable(),
		where: pgWhere(cfg.ConnConfig)}
	// read committed: a node that waited for the lock must see its twin's tables and
	// state row (under repeatable read its INSERT ... ON CONFLICT would fail instead)
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgSchemaLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, pgSchema); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT schema FROM bayes_state`).Scan(&v); err != nil {
			return err
		}
		if v != 1 {
			return fmt.Errorf("token schema %d, want 1 (from another version of portcullis)", v)
		}
		return nil
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("bayes: postgres %s: create schema: %w", s.host, err)
	}
	s.writeMu.Lock()
	err = s.refreshLocked(ctx, true)
	s.writeMu.Unlock()
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.bg, s.cancel = context.WithCancel(context.Background())
	if opt.RefreshInterval > 0 {
		s.done = make(chan struct{})
		go s.refresher()
	}
	return s, nil
}

func (s *PostgresStore) refresher() {
	defer close(s.done)
	tick := time.NewTicker(s.opt.RefreshInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(s.bg, max(time.Minute, 2*s.opt.RefreshInterval))
		err := s.Refresh(ctx)
		cancel()
		switch {
		case errors.Is(err, ErrClosed) || s.bg.Err() != nil:
			return
		case err != nil && !s.down.Swap(true):
			s.log.Warn("bayes: postgres unreachable: classifying with the token table of the last refresh", "host", s.host, "err", err)
		case err == nil && s.down.Swap(false):
			s.log.Info("bayes: postgres reachable again: token table refreshed", "host", s.host)
		}
	}
}

// Refresh reads what changed in the database since the last refresh (everything when
// tombstones it has not seen were deleted since) into the in-memory table. The
// background refresh calls it every RefreshInterval.
func (s *PostgresStore) Refresh(ctx context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.refreshLocked(ctx, false)
}

// tokenRow is a token's absolute counts as the database holds them.
type tokenRow struct {
	h         int64
	spam, ham int64
}

func clampCount(n int64) uint32 {
	return uint32(min(max(n, 0), 1<<32-1))
}

// install sets rows into t: absolute counts, (0, 0) deletes.
func (t *table) install(rows []tokenRow) {
	for _, r := range rows {
		e := entry{spam: clampCount(r.spam), ham: clampCount(r.ham)}
		if e.spam == 0 && e.ham == 0 {
			t.tokens.del(uint64(r.h))
		} else {
			t.tokens.set(uint64(r.h), e)
		}
	}
}

// refreshLocked reads the changes (or everything when full) in one repeatable-read
// snapshot, so the totals and the rows agree; writeMu must be held.
func (s *PostgresStore) refreshLocked(ctx context.Context, full bool) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	var (
		gen, purged, ns, nh int64
		rows                []tokenRow
		fresh               *table
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT gen, purged, nspam, nham FROM bayes_state`).Scan(&gen, &purged, &ns, &nh); err != nil {
			return err
		}
		if !full && gen == s.gen {
			return nil
		}
		if full || s.gen < purged || gen < s.gen {
			// gen < s.gen: the database was replaced (restored from a backup)
			full = true
			fresh = newTable()
			return s.readTokens(ctx, tx, `SELECT h, spam, ham FROM bayes_tokens WHERE spam > 0 OR ham > 0`, func(r tokenRow) {
				fresh.tokens.set(uint64(r.h), entry{spam: clampCount(r.spam), ham: clampCount(r.ham)})
			})
		}
		return s.readTokens(ctx, tx, `SELECT h, spam, ham FROM bayes_tokens WHERE gen > $1`, func(r tokenRow) { rows = append(rows, r) }, s.gen)
	})
	if err != nil {
		return fmt.Errorf("bayes: postgres %s: refresh: %w", s.host, err)
	}
	if fresh == nil && rows == nil && gen == s.gen {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if fresh != nil {
		s.t = fresh
	} else {
		s.t.install(rows)
	}
	s.t.totals = Totals{Spam: clampCount(ns), Ham: clampCount(nh)}
	s.gen = gen
	return nil
}

func (s *PostgresStore) readTokens(ctx context.Context, tx pgx.Tx, query string, each func(tokenRow), args ...any) error {
	rs, err := tx.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	var r tokenRow
	var n int64
	for rs.Next() {
		if err := rs.Scan(&r.h, &r.spam, &r.ham); err != nil {
			return err
		}
		each(r)
		n++
	}
	s.rowsRead.Add(n)
	return rs.Err()
}

// Path names the database for messages: postgres://user@host:port/database, without
// the password or the parameters.
func (s *PostgresStore) Path() string { return s.where }

// pgWhere names a database for logs and Path without the password of its DSN.
func pgWhere(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// Lookup answers from the in-memory table: no database round trip.
func (s *PostgresStore) Lookup(ctx context.Context, keys []uint64, out []Counts) (Totals, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Totals{}, ErrClosed
	}
	return s.t.lookup(keys, out), nil
}

// Apply trains in one transaction: it takes the next generation (which serialises it
// with every other writer of the site), reads the tracked messages' classes from
// bayes_seen to decide each update's outcome, adds the count deltas in SQL, and reads
// back what other nodes changed since this node's last refresh, so that the in-memory
// table equals the database at the new generation when it commits.
func (s *PostgresStore) Apply(ctx context.Context, ups []Update) ([]Outcome, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	var (
		p          *plan
		gen        int64
		ns, nh     int64
		mine, them []tokenRow
		full       bool
	)
	err := s.inTx(ctx, func(c *pgxpool.Conn) error {
		// two round trips in all, the transaction's statements pipelined (a batch
		// each): one message trained at a time (a Junk move) measured 4× slower
		// with a round trip per statement
		var purged int64
		b := &pgx.Batch{}
		// read committed whatever the server's default_transaction_isolation: a writer
		// waiting for the state row then goes on with the row the previous one
		// committed, and its later statements see that commit; under repeatable read
		// or serializable it would fail (40001) instead of taking its turn
		b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
		b.Queue(`UPDATE bayes_state SET gen = gen + 1 RETURNING gen, purged`).QueryRow(func(r pgx.Row) error { return r.Scan(&gen, &purged) })
		seen := map[uint64]trained{}
		if ds := digests(ups); len(ds) > 0 {
			b.Queue(`SELECT d, class FROM bayes_seen WHERE d = ANY($1)`, ds).Query(func(rs pgx.Rows) error {
				var d, c int64
				_, err := pgx.ForEachRow(rs, []any{&d, &c}, func() error { seen[uint64(d)] = trained(c); return nil })
				return err
			})
		}
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		p = (&table{seen: seen}).plan(ups)
		b = &pgx.Batch{}
		queueTokens(b, p, gen, &mine)
		queueSeen(b, p)
		b.Queue(`UPDATE bayes_state SET nspam = greatest(0, nspam + $1), nham = greatest(0, nham + $2) RETURNING nspam, nham`,
			p.dSpam, p.dHam).QueryRow(func(r pgx.Row) error { return r.Scan(&ns, &nh) })
		full = s.gen < purged || gen <= s.gen
		if !full {
			// what other nodes wrote since our last refresh (they all committed: we
			// hold the state row); our own rows are in mine, with generation gen
			b.Queue(`SELECT h, spam, ham FROM bayes_tokens WHERE gen > $1 AND gen < $2`, s.gen, gen).Query(func(rs pgx.Rows) error {
				var err error
				them, err = scanTokens(rs, them)
				s.rowsRead.Add(int64(len(them)))
				return err
			})
		}
		b.Queue(`COMMIT`)
		return c.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, fmt.Errorf("bayes: postgres %s: train: %w", s.host, err)
	}
	if full {
		if err := s.refreshLocked(ctx, true); err != nil {
			// committed: the next refresh reads it
			s.log.Warn("bayes: reload after training", "err", err)
		}
		return p.outcomes, nil
	}
	s.mu.Lock()
	if !s.closed {
		s.t.install(them)
		s.t.install(mine)
		s.t.totals = Totals{Spam: clampCount(ns), Ham: clampCount(nh)}
		s.gen = gen
	}
	s.mu.Unlock()
	return p.outcomes, nil
}

// inTx runs f on a connection of the pool; f begins and commits the transaction
// itself (in its pipelined batches), and inTx rolls back whatever f left open.
func (s *PostgresStore) inTx(ctx context.Context, f func(c *pgxpool.Conn) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	if err = f(c); err != nil {
		if _, rerr := c.Exec(context.WithoutCancel(ctx), `ROLLBACK`); rerr != nil {
			// the connection's state is unknown: the pool must not hand it out again
			c.Conn().Close(context.WithoutCancel(ctx))
		}
	}
	return err
}

func digests(ups []Update) []int64 {
	ds := make([]int64, 0, len(ups))
	for _, u := range ups {
		if u.Digest != 0 {
			ds = append(ds, int64(u.Digest))
		}
	}
	return ds
}

func scanTokens(rs pgx.Rows, out []tokenRow) ([]tokenRow, error) {
	var r tokenRow
	_, err := pgx.ForEachRow(rs, []any{&r.h, &r.spam, &r.ham}, func() error { out = append(out, r); return nil })
	return out, err
}

// queueTokens queues the plan's count deltas, as arrays in two statements whatever the
// number of tokens: an UPDATE of the rows that exist (clamped at 0; a row at (0, 0)
// stays as a tombstone), then an INSERT of the others with a positive delta. They run
// under the state row's lock, so no other writer inserts in between. The rows' new
// counts are appended to mine.
func queueTokens(b *pgx.Batch, p *plan, gen int64, mine *[]tokenRow) {
	hs := make([]int64, 0, len(p.tokens))
	sp := make([]int64, 0, len(p.tokens))
	hm := make([]int64, 0, len(p.tokens))
	days := make([]int32, 0, len(p.tokens))
	for h, d := range p.tokens {
		if d.spam == 0 && d.ham == 0 {
			continue
		}
		hs, sp, hm, days = append(hs, int64(h)), append(sp, int64(d.spam)), append(hm, int64(d.ham)), append(days, int32(d.day))
	}
	if len(hs) == 0 {
		return
	}
	collect := func(rs pgx.Rows) error {
		var err error
		*mine, err = scanTokens(rs, *mine)
		return err
	}
	b.Queue(`
UPDATE bayes_tokens t SET spam = least(4294967295, greatest(0, t.spam + u.s)), ham = least(4294967295, greatest(0, t.ham + u.m)),
	day = greatest(t.day, u.d), gen = $5
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[]) AS u(h, s, m, d)
WHERE t.h = u.h
RETURNING t.h, t.spam, t.ham`, hs, sp, hm, days, gen).Query(collect)
	b.Queue(`
INSERT INTO bayes_tokens (h, spam, ham, day, gen)
SELECT u.h, greatest(0, u.s), greatest(0, u.m), u.d, $5
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[]) AS u(h, s, m, d)
WHERE (u.s > 0 OR u.m > 0) AND NOT EXISTS (SELECT 1 FROM bayes_tokens t WHERE t.h = u.h)
ORDER BY u.h
RETURNING h, spam, ham`, hs, sp, hm, days, gen).Query(collect)
}

// queueSeen queues the plan's changes of the tracked messages.
func queueSeen(b *pgx.Batch, p *plan) {
	var del, ds, cs []int64
	for d, c := range p.seen {
		if c == 0 {
			del = append(del, int64(d))
		} else {
			ds, cs = append(ds, int64(d)), append(cs, int64(c))
		}
	}
	if len(del) > 0 {
		b.Queue(`DELETE FROM bayes_seen WHERE d = ANY($1)`, del)
	}
	if len(ds) > 0 {
		b.Queue(`INSERT INTO bayes_seen (d, class) SELECT * FROM unnest($1::bigint[], $2::bigint[])
			ON CONFLICT (d) DO UPDATE SET class = excluded.class`, ds, cs)
	}
}

// Stats counts tokens and hapaxes in the in-memory table (refreshed first) and reads
// the oldest day and the tracked messages from the database.
func (s *PostgresStore) Stats(ctx context.Context) (Stats, error) {
	if err := s.Refresh(ctx); err != nil {
		return Stats{}, err
	}
	s.mu.RLock()
	st := s.t.stats()
	s.mu.RUnlock()
	var oldest, seen int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT min(day) FROM bayes_tokens WHERE spam > 0 OR ham > 0), 0), (SELECT count(*) FROM bayes_seen)`).Scan(&oldest, &seen); err != nil {
		return Stats{}, fmt.Errorf("bayes: postgres %s: stats: %w", s.host, err)
	}
	st.OldestDay, st.Messages = uint16(oldest), int(seen)
	return st, nil
}

// Prune turns the rare old tokens into tombstones, which the other nodes' refreshes
// remove from their tables, and deletes the tombstones that were there at the previous
// prune (every node running has refreshed since, unless it was cut off from the
// database for that long: bayes_state.purged then makes it load everything).
func (s *PostgresStore) Prune(ctx context.Context, cfg PruneConfig) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return 0, ErrClosed
	}
	var n int64
	// read committed, as Apply's transaction, so that it waits its turn on the state row
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		var gen, prev int64
		if err := tx.QueryRow(ctx, `UPDATE bayes_state SET gen = gen + 1 RETURNING gen, prune_gen`).Scan(&gen, &prev); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM bayes_tokens WHERE spam = 0 AND ham = 0 AND gen <= $1`, prev); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE bayes_tokens SET spam = 0, ham = 0, gen = $1
			WHERE (spam > 0 OR ham > 0) AND spam + ham <= $2 AND day < $3`, gen, cfg.MinCount, int32(dayOf(time.Now().Add(-cfg.MaxAge))))
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `UPDATE bayes_state SET purged = greatest(purged, $1), prune_gen = $2`, prev, gen)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("bayes: postgres %s: prune: %w", s.host, err)
	}
	// reads the tombstones just written (and whatever else changed)
	if err := s.refreshLocked(ctx, false); err != nil {
		return int(n), err
	}
	return int(n), nil
}

// Meta reads a setting (the tokenizer fingerprint) shared by every node.
func (s *PostgresStore) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT v FROM bayes_meta WHERE k = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("bayes: postgres %s: read meta: %w", s.host, err)
	}
	return v, nil
}

func (s *PostgresStore) SetMeta(ctx context.Context, key, value string) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO bayes_meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, key, value); err != nil {
		return fmt.Errorf("bayes: postgres %s: write meta: %w", s.host, err)
	}
	return nil
}

// Close stops the refresh and closes the connections.
func (s *PostgresStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	if s.done != nil {
		<-s.done
	}
	s.writeMu.Lock()
	s.pool.Close()
	s.writeMu.Unlock()
	return nil
}
