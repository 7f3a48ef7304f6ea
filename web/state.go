package web

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/portcullis-mail/portcullis/internal/statedb"
)

// State is the page's state database: the sessions and the digest tickets already used
// (the keys are in Config.SecretFile: a copy of the database signs nothing). It is a SQLite file under the data directory (DATA/web.db),
// or the PostgreSQL database the nodes share, so that a login made on one node is valid
// on the others, survives a restart, and a ticket used on one node is used on all.
type State struct {
	db *statedb.DB
}

// Only a hash of a session's token is stored (id): a copy of the table (a backup, a
// replica) logs no one in. stamp is the user's credential stamp at login (Credentials).
// csrf is empty: the token is derived from the cookie's (keys.csrfToken); older versions
// stored it. web_keys holds the signing key's id ('key_id'); older versions kept the
// ticket key itself there ('ticket'), which the start moves out (loadKeys).
const stateSQLite = `
CREATE TABLE IF NOT EXISTS web_sessions (
	id      TEXT PRIMARY KEY,
	"user"  TEXT NOT NULL,
	admin   INTEGER NOT NULL,
	csrf    TEXT NOT NULL,
	stamp   TEXT NOT NULL,
	created INTEGER NOT NULL,
	used    INTEGER NOT NULL,
	flash   TEXT NOT NULL DEFAULT '',
	checked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions("user");
CREATE TABLE IF NOT EXISTS web_tickets_used (
	id      TEXT PRIMARY KEY,
	expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS web_keys (
	name TEXT PRIMARY KEY,
	key  TEXT NOT NULL
) WITHOUT ROWID;`

const statePostgres = `
CREATE TABLE IF NOT EXISTS web_sessions (
	id      TEXT PRIMARY KEY,
	"user"  TEXT NOT NULL,
	admin   INTEGER NOT NULL,
	csrf    TEXT NOT NULL,
	stamp   TEXT NOT NULL,
	created BIGINT NOT NULL,
	used    BIGINT NOT NULL,
	flash   TEXT NOT NULL DEFAULT '',
	checked BIGINT NOT NULL DEFAULT 0
);
ALTER TABLE web_sessions ADD COLUMN IF NOT EXISTS checked BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions("user");
CREATE TABLE IF NOT EXISTS web_tickets_used (
	id      TEXT PRIMARY KEY,
	expires BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS web_keys (
	name TEXT PRIMARY KEY,
	key  TEXT NOT NULL
);`

// OpenState opens (creating) the page's state database.
func OpenState(ctx context.Context, cfg statedb.Config) (*State, error) {
	db, err := statedb.Open(ctx, cfg, statedb.Schema{SQLite: stateSQLite, Postgres: statePostgres, Lock: 0x706f7274_77656231}) // "portweb1"
	if err != nil {
		return nil, fmt.Errorf("web: state: %w", err)
	}
	if !db.Postgres() {
		if err := addCheckedSQLite(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("web: state: %w", err)
		}
	}
	return &State{db: db}, nil
}

// addCheckedSQLite adds the column checked (when a session's credential stamp last
// matched: the start of its grace in a directory outage) to a database an older version
// made; PostgreSQL's schema does it with ADD COLUMN IF NOT EXISTS, which SQLite lacks.
// An older session gets 0: no grace until its next successful check.
func addCheckedSQLite(ctx context.Context, db *statedb.DB) error {
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pragma_table_info('web_sessions') WHERE name = 'checked'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := db.Exec(ctx, `ALTER TABLE web_sessions ADD COLUMN checked INTEGER NOT NULL DEFAULT 0`)
	return err
}

// Close closes the database.
func (st *State) Close() error { return st.db.Close() }

// legacyKey returns the ticket key an older version kept in the database, or nil.
func (st *State) legacyKey(ctx context.Context) ([]byte, error) {
	var k string
	err := st.db.QueryRow(ctx, `SELECT key FROM web_keys WHERE name = 'ticket'`).Scan(&k)
	if errors.Is(err, errNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("web: state: reading the old ticket key: %w", err)
	}
	key, err := hex.DecodeString(k)
	if err != nil || len(key) < minKeyLen {
		return nil, nil // damaged: nothing to keep, and dropLegacyKey deletes it
	}
	return key, nil
}

// dropLegacyKey deletes what an older version kept in the database that a copy of it
// must not give away: the ticket key and the sessions' CSRF tokens (now derived from the
// key file's key). A deleted row's bytes stay in the file's free pages and the WAL, so a
// SQLite database is vacuumed (rewritten) and its WAL truncated; a PostgreSQL table is
// rewritten by VACUUM FULL (its own WAL and backups are the operator's: docs/operations.md).
//
// A PostgreSQL role that may not VACUUM FULL (not the table's owner) gets a warning, not
// a refusal to start: the row is deleted, only its dead bytes wait for autovacuum.
func (st *State) dropLegacyKey(ctx context.Context, warn func(string, ...any)) error {
	res, err := st.db.Exec(ctx, `DELETE FROM web_keys WHERE name = 'ticket'`)
	if err != nil {
		return fmt.Errorf("web: state: deleting the old ticket key: %w", err)
	}
	keys, _ := res.RowsAffected()
	res, err = st.db.Exec(ctx, `UPDATE web_sessions SET csrf = '' WHERE csrf <> ''`)
	if err != nil {
		return fmt.Errorf("web: state: deleting the old CSRF tokens: %w", err)
	}
	tokens, _ := res.RowsAffected()
	if keys == 0 && tokens == 0 {
		return nil
	}
	if st.db.Postgres() {
		if keys > 0 {
			if _, err := st.db.Exec(ctx, `VACUUM FULL web_keys`); err != nil && warn != nil {
				warn("web: state: rewriting web_keys without the old ticket key failed (VACUUM FULL; the table's owner may): run it as the owner", "err", err.Error())
			}
		}
		return nil
	}
	if _, err := st.db.Exec(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("web: state: vacuuming after deleting the old key: %w", err)
	}
	if _, err := st.db.Exec(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("web: state: truncating the WAL after deleting the old key: %w", err)
	}
	return nil
}

// swapKeyID records id as the signing key's id and returns the one recorded before ("":
// none): a node whose key differs from the last one started can say so.
func (st *State) swapKeyID(ctx context.Context, id string) (string, error) {
	var prev string
	err := st.db.Tx(ctx, func(tx *statedb.Tx) error {
		err := tx.QueryRow(ctx, `SELECT key FROM web_keys WHERE name = 'key_id'`).Scan(&prev)
		if err != nil && !errors.Is(err, errNoRows) {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO web_keys (name, key) VALUES ('key_id', ?) ON CONFLICT (name) DO UPDATE SET key = excluded.key`, id)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("web: state: recording the key id: %w", err)
	}
	return prev, nil
}

// useTicket records the ticket id as used until expires (Unix seconds); it says false
// when it was used already.
func (st *State) useTicket(ctx context.Context, id string, expires int64) (bool, error) {
	res, err := st.db.Exec(ctx, `INSERT INTO web_tickets_used (id, expires) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, hashToken(id), expires)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// hashToken is what the database keeps of a secret token: its SHA-256.
func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

var errNoRows = sql.ErrNoRows
