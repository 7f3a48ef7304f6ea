package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis-mail/portcullis/address"
)

// postgresSchema is additive: tables and indexes are only ever added (IF NOT EXISTS),
// so that nodes of different versions share one database during an upgrade.
const postgresSchema = `
CREATE TABLE IF NOT EXISTS directory_users (
	address   TEXT PRIMARY KEY,
	password  TEXT NOT NULL DEFAULT '',
	quota     BIGINT NOT NULL DEFAULT 0 CHECK (quota >= 0),
	mail_host TEXT NOT NULL DEFAULT '',
	state     TEXT NOT NULL DEFAULT '',
	updated   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS directory_aliases (
	alias   TEXT PRIMARY KEY,
	address TEXT NOT NULL REFERENCES directory_users(address) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS directory_aliases_address ON directory_aliases(address);
ALTER TABLE directory_users ADD COLUMN IF NOT EXISTS moved TIMESTAMPTZ;
`

// schemaLock is the advisory lock that serialises schema creation: CREATE TABLE IF NOT
// EXISTS run by two processes at once can still fail on the catalog's unique index.
const schemaLock = 0x706f7274_64697231 // "portdir1"

// Postgres is the directory in a PostgreSQL database shared by the nodes. It is safe for
// concurrent use.
type Postgres struct {
	pool *pgxpool.Pool
	now  func() time.Time // this process's clock, for User.MovedLocal
}

// OpenPostgres connects to dsn and creates the directory's tables if needed.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("directory: postgres connection string: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("directory: postgres %s: %w", cfg.ConnConfig.Host, err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, postgresSchema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("directory: postgres %s: create schema: %w", cfg.ConnConfig.Host, err)
	}
	return &Postgres{pool: pool, now: time.Now}, nil
}

// SetClock replaces the clock User.MovedLocal is given in (time.Now): a test simulates
// a node whose clock is skewed from PostgreSQL's. Call it before any Lookup.
func (p *Postgres) SetClock(now func() time.Time) { p.now = now }

// Close closes the connection pool.
func (p *Postgres) Close() error { p.pool.Close(); return nil }

// Lookup implements Directory: one query, by primary key; an alias finds the user it
// belongs to (User.Address is then the user's own address), as LDAP's recipient filter
// finds an entry by mailLocalAddress.
func (p *Postgres) Lookup(ctx context.Context, addr string) (User, error) {
	a, err := address.Normalize(addr)
	if err != nil {
		return User{}, notFound(addr)
	}
	u := User{Address: a}
	// now() − moved is PostgreSQL's clock against itself: MovedLocal is then this
	// process's clock minus that age, whatever the skew between the two clocks.
	var dbNow time.Time
	err = p.pool.QueryRow(ctx, `
SELECT u.address, u.password, u.quota, u.mail_host, u.state, u.updated, coalesce(u.moved, 'epoch'),
       now(),
       coalesce(array_agg(al.alias ORDER BY al.alias) FILTER (WHERE al.alias IS NOT NULL), '{}')
FROM directory_users u LEFT JOIN directory_aliases al ON al.address = u.address
WHERE u.address = coalesce((SELECT address FROM directory_aliases WHERE alias = $1), $1)
GROUP BY u.address`, a).Scan(&u.Address, &u.PasswordHash, &u.Quota, &u.MailHost, &u.State, &u.Changed, &u.Moved, &dbNow, &u.Aliases)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return User{}, notFound(a)
	case err != nil:
		return User{}, fmt.Errorf("directory: look up %s: %w", a, err)
	}
	if len(u.Aliases) == 0 {
		u.Aliases = nil
	}
	if u.Moved.Unix() == 0 {
		u.Moved = time.Time{}
	} else {
		// Read after the answer arrived: at most a round trip late, which only moves
		// the old back-end's cut later by as much (it then closes a little more).
		u.MovedLocal = p.now().Add(-max(dbNow.Sub(u.Moved), 0))
	}
	return u, nil
}

// Put creates or replaces the user u.Address with all its fields, aliases included, in
// one transaction.
func (p *Postgres) Put(ctx context.Context, u User) error {
	a, err := address.Normalize(u.Address)
	if err != nil {
		return fmt.Errorf("directory: put %.80q: %w", u.Address, err)
	}
	if u.Quota < 0 {
		return fmt.Errorf("directory: put %s: negative quota", a)
	}
	aliases := make([]string, 0, len(u.Aliases))
	for _, al := range u.Aliases {
		n, err := address.Normalize(al)
		if err != nil {
			return fmt.Errorf("directory: put %s: alias %.80q: %w", a, al, err)
		}
		aliases = append(aliases, n)
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
INSERT INTO directory_users(address, password, quota, mail_host, state, updated)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (address) DO UPDATE SET password = $2, quota = $3, mail_host = $4, state = $5, updated = now()`,
			a, u.PasswordHash, u.Quota, u.MailHost, u.State); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM directory_aliases WHERE address = $1`, a); err != nil {
			return err
		}
		for _, al := range aliases {
			if _, err := tx.Exec(ctx, `INSERT INTO directory_aliases(alias, address) VALUES ($1, $2)`, al, a); err != nil {
				return fmt.Errorf("alias %s: %w", al, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory: put %s: %w", a, err)
	}
	return nil
}

// SetMailHost moves the user's mailbox location to host (and clears the state), the
// flip at the end of a move. User.Moved becomes now, unless the user was moving: then
// it stays the start of the move.
func (p *Postgres) SetMailHost(ctx context.Context, addr, host string) error {
	return p.update(ctx, addr, `UPDATE directory_users SET mail_host = $2, state = '', updated = now(),
	moved = CASE WHEN state = 'moving' AND moved IS NOT NULL THEN moved WHEN mail_host = $2 THEN moved ELSE now() END
WHERE address = $1`, host)
}

// SetState sets the user's state (StateMoving, or "" for none). Becoming moving sets
// User.Moved to now.
func (p *Postgres) SetState(ctx context.Context, addr, state string) error {
	return p.update(ctx, addr, `UPDATE directory_users SET state = $2, updated = now(),
	moved = CASE WHEN $2 = 'moving' AND state <> 'moving' THEN now() ELSE moved END
WHERE address = $1`, state)
}

// Delete removes the user and their aliases.
func (p *Postgres) Delete(ctx context.Context, addr string) error {
	return p.update(ctx, addr, `DELETE FROM directory_users WHERE address = $1`)
}

func (p *Postgres) update(ctx context.Context, addr, query string, args ...any) error {
	a, err := address.Normalize(addr)
	if err != nil {
		return notFound(addr)
	}
	tag, err := p.pool.Exec(ctx, query, append([]any{a}, args...)...)
	if err != nil {
		return fmt.Errorf("directory: update %s: %w", a, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(a)
	}
	return nil
}
