package statedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/portcullis-mail/portcullis/internal/private"
)

// Config says where a state database lives.
type Config struct {
	// Path is the SQLite file, used when Postgres is empty.
	Path string
	// Postgres is a PostgreSQL connection string (postgres://user@host/db): the
	// database the nodes of a multi-node installation share.
	Postgres string
}

// Schema is a database's tables, in each dialect. Both are additive (CREATE ... IF NOT
// EXISTS): nodes of different versions share one PostgreSQL database during an upgrade.
type Schema struct {
	SQLite   string
	Postgres string
	// Lock is the PostgreSQL advisory lock taken while the schema is created: CREATE
	// TABLE IF NOT EXISTS run by two nodes at once can still fail on the catalog's
	// unique index.
	Lock int64
}

// DB is an open state database. Queries are written once, with ? placeholders, in the
// SQL that SQLite and PostgreSQL share (ON CONFLICT upserts, no column named by a
// reserved word unquoted).
type DB struct {
	db *sql.DB
	pg bool
}

// Open opens (creating) the database cfg names and creates schema's tables.
func Open(ctx context.Context, cfg Config, schema Schema) (*DB, error) {
	if cfg.Postgres != "" {
		return openPostgres(ctx, cfg.Postgres, schema)
	}
	if cfg.Path == "" {
		return nil, errors.New("statedb: neither a SQLite path nor a PostgreSQL connection string")
	}
	// The state names users and what they do: the owner's eyes only.
	if err := private.DB(cfg.Path); err != nil {
		return nil, fmt.Errorf("statedb: %w", err)
	}
	db, err := sql.Open("sqlite", private.DSN(cfg.Path, "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"))
	if err != nil {
		return nil, fmt.Errorf("statedb %s: %w", cfg.Path, err)
	}
	// One writer: SQLite serialises writes anyway, and one connection makes a
	// transaction's read-then-write atomic without SQLITE_BUSY upgrades.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema.SQLite); err != nil {
		db.Close()
		return nil, fmt.Errorf("statedb %s: %w", cfg.Path, err)
	}
	return &DB{db: db}, nil
}

func openPostgres(ctx context.Context, dsn string, schema Schema) (*DB, error) {
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("statedb: postgres connection string: %w", err)
	}
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 5 * time.Second
	}
	db := stdlib.OpenDB(*pc)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	tx, err := db.BeginTx(ctx, nil)
	if err == nil {
		if _, err = tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, schema.Lock); err == nil {
			_, err = tx.ExecContext(ctx, schema.Postgres)
		}
		if err == nil {
			err = tx.Commit()
		} else {
			_ = tx.Rollback()
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("statedb: postgres %s: %w", pc.Host, err)
	}
	return &DB{db: db, pg: true}, nil
}

// Postgres says whether the database is PostgreSQL.
func (d *DB) Postgres() bool { return d.pg }

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// rebind turns the ? placeholders of q into PostgreSQL's $1, $2... The package's
// queries hold no ? in literals.
func (d *DB) rebind(q string) string {
	if !d.pg {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Exec runs a statement.
func (d *DB) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return d.db.ExecContext(ctx, d.rebind(q), args...)
}

// Query runs a query.
func (d *DB) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return d.db.QueryContext(ctx, d.rebind(q), args...)
}

// QueryRow runs a query that returns at most one row.
func (d *DB) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return d.db.QueryRowContext(ctx, d.rebind(q), args...)
}

// Tx runs f in a transaction, committed when f returns nil.
func (d *DB) Tx(ctx context.Context, f func(tx *Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(&Tx{tx: tx, d: d}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Tx is a transaction of a DB.
type Tx struct {
	tx *sql.Tx
	d  *DB
}

// Exec runs a statement in the transaction.
func (t *Tx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.d.rebind(q), args...)
}

// QueryRow runs a query in the transaction.
func (t *Tx) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.d.rebind(q), args...)
}
