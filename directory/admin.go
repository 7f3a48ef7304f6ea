package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis-mail/portcullis/address"
)

// ErrExists is returned (wrapped) by Add for an address that already has a user, and by
// AddAlias for an alias already taken (by a user or another alias).
var ErrExists = errors.New("directory: address already taken")

// Add creates the user u (password hash, quota, mail host, state; aliases are added with
// AddAlias). It fails with ErrExists when the address is a user or an alias already.
func (p *Postgres) Add(ctx context.Context, u User) error {
	a, err := address.Normalize(u.Address)
	if err != nil {
		return fmt.Errorf("directory: add %.80q: %w", u.Address, err)
	}
	if u.Quota < 0 {
		return fmt.Errorf("directory: add %s: negative quota", a)
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM directory_aliases WHERE alias = $1`, a).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %s is an alias", ErrExists, a)
		}
		_, err := tx.Exec(ctx, `
INSERT INTO directory_users(address, password, quota, mail_host, state, updated)
VALUES ($1, $2, $3, $4, $5, now())`, a, u.PasswordHash, u.Quota, u.MailHost, u.State)
		if isUniqueViolation(err) {
			return fmt.Errorf("%w: %s", ErrExists, a)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("directory: add %s: %w", a, err)
	}
	return nil
}

// SetPasswordHash replaces the user's password hash.
func (p *Postgres) SetPasswordHash(ctx context.Context, addr, hash string) error {
	return p.update(ctx, addr, `UPDATE directory_users SET password = $2, updated = now() WHERE address = $1`, hash)
}

// SetQuota replaces the user's quota in bytes (0: the store's default).
func (p *Postgres) SetQuota(ctx context.Context, addr string, quota int64) error {
	if quota < 0 {
		return fmt.Errorf("directory: quota of %.80q: negative", addr)
	}
	return p.update(ctx, addr, `UPDATE directory_users SET quota = $2, updated = now() WHERE address = $1`, quota)
}

// AddAlias makes alias deliver to the user addr. An alias is an address of its own: it
// cannot be a user's address nor another user's alias (ErrExists).
func (p *Postgres) AddAlias(ctx context.Context, addr, alias string) error {
	a, err := address.Normalize(addr)
	if err != nil {
		return notFound(addr)
	}
	al, err := address.Normalize(alias)
	if err != nil {
		return fmt.Errorf("directory: alias %.80q: %w", alias, err)
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var user, aliased int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM directory_users WHERE address = $1),
       (SELECT count(*) FROM directory_users WHERE address = $2)`, a, al).Scan(&user, &aliased); err != nil {
			return err
		}
		if user == 0 {
			return notFound(a)
		}
		if aliased > 0 {
			return fmt.Errorf("%w: %s is a user", ErrExists, al)
		}
		_, err := tx.Exec(ctx, `INSERT INTO directory_aliases(alias, address) VALUES ($1, $2)`, al, a)
		if isUniqueViolation(err) {
			return fmt.Errorf("%w: %s is an alias already", ErrExists, al)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("directory: alias %s of %s: %w", al, a, err)
	}
	return nil
}

// DeleteAlias removes an alias; ErrNotFound when there is none.
func (p *Postgres) DeleteAlias(ctx context.Context, alias string) error {
	al, err := address.Normalize(alias)
	if err != nil {
		return notFound(alias)
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM directory_aliases WHERE alias = $1`, al)
	if err != nil {
		return fmt.Errorf("directory: delete alias %s: %w", al, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(al)
	}
	return nil
}

// List returns every user with their aliases, ordered by address.
func (p *Postgres) List(ctx context.Context) ([]User, error) {
	rows, err := p.pool.Query(ctx, `
SELECT u.address, u.password, u.quota, u.mail_host, u.state, u.updated,
       coalesce(array_agg(al.alias ORDER BY al.alias) FILTER (WHERE al.alias IS NOT NULL), '{}')
FROM directory_users u LEFT JOIN directory_aliases al ON al.address = u.address
GROUP BY u.address ORDER BY u.address`)
	if err != nil {
		return nil, fmt.Errorf("directory: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var e User
		err := r.Scan(&e.Address, &e.PasswordHash, &e.Quota, &e.MailHost, &e.State, &e.Changed, &e.Aliases)
		if len(e.Aliases) == 0 {
			e.Aliases = nil
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("directory: list: %w", err)
	}
	return out, nil
}

// isUniqueViolation reports PostgreSQL's unique_violation (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
