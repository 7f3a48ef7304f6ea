package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/portcullis-mail/portcullis/internal/statedb"
)

// State is the page's state database: the sessions, the digest tickets already used and
// the key that signs tickets. It is a SQLite file under the data directory (DATA/web.db),
// or the PostgreSQL database the nodes share, so that a login made on one node is valid
// on the others, survives a restart, and a ticket used on one node is used on all.
type State struct {
	db *statedb.DB
}

// Only a hash of a session's token is stored (id): a copy of the table (a backup, a
// replica) logs no one in. stamp is the user's credential stamp at login (Credentials).
const stateSQLite = `
CREATE TABLE IF NOT EXISTS web_sessions (
	id      TEXT PRIMARY KEY,
	"user"  TEXT NOT NULL,
	admin   INTEGER NOT NULL,
	csrf    TEXT NOT NULL,
	stamp   TEXT NOT NULL,
	created INTEGER NOT NULL,
	used    INTEGER NOT NULL,
	flash   TEXT NOT NULL DEFAULT ''
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
	flash   TEXT NOT NULL DEFAULT ''
);
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
	return &State{db: db}, nil
}

// Close closes the database.
func (st *State) Close() error { return st.db.Close() }

// ticketKey returns the key that signs the digest's tickets, storing initial (a random
// key when nil) if the database has none yet: every node sharing the database signs and
// checks with the same key.
func (st *State) ticketKey(ctx context.Context, initial []byte) ([]byte, error) {
	if initial == nil {
		initial = make([]byte, 32)
		_, _ = rand.Read(initial)
	}
	if _, err := st.db.Exec(ctx, `INSERT INTO web_keys (name, key) VALUES ('ticket', ?) ON CONFLICT (name) DO NOTHING`, hex.EncodeToString(initial)); err != nil {
		return nil, fmt.Errorf("web: storing the ticket key: %w", err)
	}
	var k string
	if err := st.db.QueryRow(ctx, `SELECT key FROM web_keys WHERE name = 'ticket'`).Scan(&k); err != nil {
		return nil, fmt.Errorf("web: reading the ticket key: %w", err)
	}
	key, err := hex.DecodeString(k)
	if err != nil || len(key) < 32 {
		return nil, errors.New("web: the stored ticket key is damaged")
	}
	return key, nil
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
