package quarantine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/internal/statedb"
)

// Kinds of sender list entries.
const (
	Allow = "allow"
	Block = "block"
)

// Digest frequencies a user chooses.
const (
	DigestNever  = "never"
	DigestDaily  = "daily"
	DigestWeekly = "weekly"
)

// Entry is one sender on a user's list: an address, or "@domain" for a whole domain.
type Entry struct {
	Sender string
	Kind   string // Allow or Block
	Added  time.Time
}

// Lists holds per-user sender lists and digest preferences: in SQLite (DATA/quarantine.db)
// or in the PostgreSQL database the nodes share, so that the rules of every front-end
// read the lists a user set on any node's page.
type Lists struct {
	db *statedb.DB
}

// "user" is quoted everywhere: in PostgreSQL the bare word is CURRENT_USER.
const listsSchema = `
CREATE TABLE IF NOT EXISTS sender_lists (
	user   TEXT NOT NULL,
	sender TEXT NOT NULL,
	kind   TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
	added  INTEGER NOT NULL,
	PRIMARY KEY (user, sender)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digest_prefs (
	user      TEXT PRIMARY KEY,
	frequency TEXT NOT NULL CHECK (frequency IN ('never', 'daily', 'weekly')),
	last_sent INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;`

const listsPostgres = `
CREATE TABLE IF NOT EXISTS sender_lists (
	"user" TEXT NOT NULL,
	sender TEXT NOT NULL,
	kind   TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
	added  BIGINT NOT NULL,
	PRIMARY KEY ("user", sender)
);
CREATE TABLE IF NOT EXISTS digest_prefs (
	"user"    TEXT PRIMARY KEY,
	frequency TEXT NOT NULL CHECK (frequency IN ('never', 'daily', 'weekly')),
	last_sent BIGINT NOT NULL DEFAULT 0
);`

// MaxEntries bounds one user's list, so a page cannot grow a table without end.
const MaxEntries = 1000

// OpenLists opens (creating) the lists database cfg names: the SQLite file cfg.Path, or
// the PostgreSQL database cfg.Postgres.
func OpenLists(ctx context.Context, cfg statedb.Config) (*Lists, error) {
	db, err := statedb.Open(ctx, cfg, statedb.Schema{SQLite: listsSchema, Postgres: listsPostgres, Lock: 0x706f7274_71756131}) // "portqua1"
	if err != nil {
		return nil, fmt.Errorf("quarantine lists: %w", err)
	}
	return &Lists{db: db}, nil
}

// Close closes the database.
func (l *Lists) Close() error { return l.db.Close() }

// NormalizeSender checks and folds a list entry: an address (local part kept, domain in
// lower case) or "@domain".
func NormalizeSender(s string) (string, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutPrefix(s, "@"); ok {
		nd, err := address.NormalizeDomain(d)
		if err != nil || nd == "" || strings.ContainsAny(nd, "@ \t") {
			return "", fmt.Errorf("%q is not a domain", d)
		}
		return "@" + nd, nil
	}
	if strings.ContainsAny(s, " \t\r\n<>\"\\,;") {
		return "", fmt.Errorf("%q is not an address", s)
	}
	local, domain, ok := address.Split(s)
	if !ok || local == "" || domain == "" || len(s) > 320 {
		return "", fmt.Errorf("%q is not an address", s)
	}
	nd, err := address.NormalizeDomain(domain)
	if err != nil {
		return "", fmt.Errorf("%q is not an address: %w", s, err)
	}
	return strings.ToLower(local) + "@" + nd, nil
}

// Set puts sender on user's list as kind (replacing the other kind).
func (l *Lists) Set(ctx context.Context, user, sender, kind string) error {
	if kind != Allow && kind != Block {
		return fmt.Errorf("quarantine lists: kind %q: want allow or block", kind)
	}
	s, err := NormalizeSender(sender)
	if err != nil {
		return err
	}
	var n int
	if err := l.db.QueryRow(ctx, `SELECT count(*) FROM sender_lists WHERE "user" = ?`, user).Scan(&n); err != nil {
		return err
	}
	if n >= MaxEntries {
		return fmt.Errorf("quarantine lists: %s has %d entries already (at most %d)", user, n, MaxEntries)
	}
	_, err = l.db.Exec(ctx, `INSERT INTO sender_lists ("user", sender, kind, added) VALUES (?, ?, ?, ?)
		ON CONFLICT ("user", sender) DO UPDATE SET kind = excluded.kind, added = excluded.added`, user, s, kind, time.Now().Unix())
	return err
}

// Remove takes sender off user's list. sender is folded as Set folds it, so the entry
// Set stored goes whatever case the user types it in. It is an error when no entry
// matches: the page must not say "removed" when nothing was.
func (l *Lists) Remove(ctx context.Context, user, sender string) error {
	if s, err := NormalizeSender(sender); err == nil {
		sender = s
	}
	res, err := l.db.Exec(ctx, `DELETE FROM sender_lists WHERE "user" = ? AND sender = ?`, user, sender)
	if err != nil {
		return fmt.Errorf("quarantine lists: removing %q: %w", sender, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%q is not on the list", sender)
	}
	return nil
}

// Entries returns user's list, allowed first, by sender.
func (l *Lists) Entries(ctx context.Context, user string) ([]Entry, error) {
	rows, err := l.db.Query(ctx, `SELECT sender, kind, added FROM sender_lists WHERE "user" = ? ORDER BY kind, sender`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var added int64
		if err := rows.Scan(&e.Sender, &e.Kind, &added); err != nil {
			return nil, err
		}
		e.Added = time.Unix(added, 0)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Lookup returns the kind of list entry that matches sender for user ("" for none): the
// address first, then its domain, as Postfix's access maps search.
func (l *Lists) Lookup(ctx context.Context, user, sender string) (string, error) {
	s, err := NormalizeSender(sender)
	if err != nil {
		return "", nil // the null sender or a malformed one is on no list
	}
	_, domain, _ := strings.Cut(s, "@")
	var kind string
	err = l.db.QueryRow(ctx, `SELECT kind FROM sender_lists WHERE "user" = ? AND sender IN (?, ?)
		ORDER BY length(sender) DESC LIMIT 1`, user, s, "@"+domain).Scan(&kind)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return kind, err
}

// Digest returns user's digest frequency (DigestNever when unset).
func (l *Lists) Digest(ctx context.Context, user string) (string, error) {
	var f string
	err := l.db.QueryRow(ctx, `SELECT frequency FROM digest_prefs WHERE "user" = ?`, user).Scan(&f)
	if errors.Is(err, sql.ErrNoRows) {
		return DigestNever, nil
	}
	return f, err
}

// SetDigest sets user's digest frequency.
func (l *Lists) SetDigest(ctx context.Context, user, freq string) error {
	if freq != DigestNever && freq != DigestDaily && freq != DigestWeekly {
		return fmt.Errorf("digest %q: want never, daily or weekly", freq)
	}
	_, err := l.db.Exec(ctx, `INSERT INTO digest_prefs ("user", frequency, last_sent) VALUES (?, ?, ?)
		ON CONFLICT ("user") DO UPDATE SET frequency = excluded.frequency`, user, freq, time.Now().Unix())
	return err
}

// DigestUser is a user whose digest is due.
type DigestUser struct {
	User     string
	LastSent time.Time
}

// DueDigests returns the users whose digest is due at now.
func (l *Lists) DueDigests(ctx context.Context, now time.Time) ([]DigestUser, error) {
	rows, err := l.db.Query(ctx, `SELECT "user", last_sent FROM digest_prefs
		WHERE (frequency = 'daily' AND last_sent <= ?) OR (frequency = 'weekly' AND last_sent <= ?) ORDER BY "user"`,
		now.Add(-24*time.Hour).Unix(), now.Add(-7*24*time.Hour).Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DigestUser
	for rows.Next() {
		var u DigestUser
		var last int64
		if err := rows.Scan(&u.User, &last); err != nil {
			return nil, err
		}
		u.LastSent = time.Unix(last, 0)
		out = append(out, u)
	}
	return out, rows.Err()
}

// ClaimDigest moves user's last digest time from last (as DueDigests gave it) to t, and
// says whether it did: of several nodes that find the same digest due, one claims it and
// sends it. A claim is undone by claiming back (t to last) when sending fails.
func (l *Lists) ClaimDigest(ctx context.Context, user string, last, t time.Time) (bool, error) {
	res, err := l.db.Exec(ctx, `UPDATE digest_prefs SET last_sent = ? WHERE "user" = ? AND last_sent = ?`, t.Unix(), user, last.Unix())
	if err != nil {
		return false, fmt.Errorf("quarantine lists: digest of %s: %w", user, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
