package store

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// stmtCache keeps the index's prepared statements by SQL text. Without it every query
// through database/sql is parsed again by SQLite: that was 18% of the IMAP server's CPU
// under the bench/imap.sh mix. IN lists come padded to powers of two (inList), so their
// texts are few; the cache is bounded all the same, beyond it statements go uncached.
type stmtCache struct {
	db      *sql.DB
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool // being prepared by prepareLater
	wg      sync.WaitGroup  // prepareLater's goroutines, which close waits for
	closed  bool
}

const maxCachedStmts = 128

// get returns the prepared statement for query, or nil when it is not to be cached.
// The lock is not held while preparing, which waits for a connection of the pool: a
// transaction's lookup must never wait behind that.
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	if s, ok := c.m[query]; ok || len(c.m) >= maxCachedStmts || c.closed {
		c.mu.Unlock()
		return s
	}
	c.mu.Unlock()
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the uncached path reports the error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok || c.closed {
		s.Close() // prepared twice at once, or the cache closed meanwhile
		return old
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = s
	return s
}

// lookup returns the cached statement for query, nil when there is none.
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

// prepareLater prepares query into the cache from a goroutine of its own, which waits
// for a free connection; once per query text at a time.
func (c *stmtCache) prepareLater(query string) {
	c.mu.Lock()
	if c.pending[query] || len(c.m)+len(c.pending) >= maxCachedStmts || c.closed {
		c.mu.Unlock()
		return
	}
	if c.pending == nil {
		c.pending = map[string]bool{}
	}
	c.pending[query] = true
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.get(ctx, query)
		c.mu.Lock()
		delete(c.pending, query)
		c.mu.Unlock()
	}()
}

// close closes the statements and waits for those being prepared, so that none holds a
// connection when the database is closed next.
func (c *stmtCache) close() {
	c.mu.Lock()
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}

// cachedQ runs queries on the database or, with tx set, in a transaction, through the
// statement cache.
type cachedQ struct {
	c  *stmtCache
	tx *sql.Tx
}

// q returns the user's query runner, in tx when tx is not nil.
func (u *User) q(tx *sql.Tx) cachedQ { return cachedQ{c: &u.stmts, tx: tx} }

func (q cachedQ) stmt(ctx context.Context, query string) *sql.Stmt {
	if q.tx == nil {
		return q.c.get(ctx, query)
	}
	// In a transaction a statement not yet cached runs unprepared this time and is
	// prepared for the next in the background: preparing it now would take a second
	// connection of the pool while the transaction holds one, and with the pool's others
	// held by writers waiting for this transaction's write lock (CacheEnvelope, busy
	// for up to busy_timeout) every session of the user stalled for 10 s and more
	// (issue 16's "19 s stall" under imaptest's stress).
	s := q.c.lookup(query)
	if s == nil {
		q.c.prepareLater(query)
		return nil
	}
	return q.tx.StmtContext(ctx, s) // on the transaction's connection; closed with it
}

func (q cachedQ) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := q.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryContext(ctx, query, args...)
	}
	return q.c.db.QueryContext(ctx, query, args...)
}

func (q cachedQ) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := q.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryRowContext(ctx, query, args...)
	}
	return q.c.db.QueryRowContext(ctx, query, args...)
}

func (q cachedQ) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := q.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.ExecContext(ctx, query, args...)
	}
	return q.c.db.ExecContext(ctx, query, args...)
}
