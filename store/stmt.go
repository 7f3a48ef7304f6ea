package store

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the index's prepared statements by SQL text. Without it every query
// through database/sql is parsed again by SQLite: that was 18% of the IMAP server's CPU
// under the bench/imap.sh mix. IN lists come padded to powers of two (inList), so their
// texts are few; the cache is bounded all the same, beyond it statements go uncached.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

const maxCachedStmts = 128

// get returns the prepared statement for query, or nil when it is not to be cached.
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[query]; ok {
		return s
	}
	if len(c.m) >= maxCachedStmts {
		return nil
	}
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the uncached path reports the error
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = s
	return s
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
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
	s := q.c.get(ctx, query)
	if s != nil && q.tx != nil {
		return q.tx.StmtContext(ctx, s) // closed with the transaction
	}
	return s
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
