package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/portcullis-mail/portcullis/internal/private"
)

// Sieve scripts live in the user's index (index.sqlite), beside the mailboxes they file
// into: a user's scripts go with the user when the directory is moved, backed up or
// deleted, and the same database serves the ManageSieve server, delivery and
// `portcullis sieve ...` run beside a running server (SQLite's locking orders the
// writers of both processes; OpenScripts opens the index without touching the maildir,
// so a tool never resynchronizes folders behind the server's back).
//
// The memory of the Sieve actions that must not repeat (vacation replies per sender and
// handle, RFC 5230 §4.2; duplicate ids, RFC 7352) is kept in the same database, each entry
// with its expiry.

// Script errors; match them with errors.Is.
var (
	ErrNoScript       = errors.New("store: no such script")
	ErrScriptExists   = errors.New("store: script already exists")
	ErrScriptActive   = errors.New("store: script is active")
	ErrTooManyScripts = errors.New("store: too many scripts")
	ErrScriptTooBig   = errors.New("store: script too big")
	ErrBadScriptName  = errors.New("store: bad script name")
)

// MaxScriptNameLen bounds a script name in characters (Pigeonhole's limit is 256).
const MaxScriptNameLen = 256

// sieveSchema is executed by open (and OpenScripts): additive, like the rest of the
// index. At most one script is active (the partial unique index).
const sieveSchema = `
CREATE TABLE IF NOT EXISTS sieve_script(
  name TEXT PRIMARY KEY,
  script BLOB NOT NULL,
  active INTEGER NOT NULL DEFAULT 0,
  modified INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS sieve_script_active ON sieve_script(active) WHERE active <> 0;
CREATE TABLE IF NOT EXISTS sieve_memory(
  key TEXT PRIMARY KEY,
  expires INTEGER NOT NULL
) WITHOUT ROWID;
`

// ScriptInfo describes one stored script.
type ScriptInfo struct {
	Name     string
	Active   bool
	Size     int64
	Modified time.Time
}

// ScriptLimits are the per-user quotas PutScript and CheckScriptSpace enforce; zero is
// no limit.
type ScriptLimits struct {
	// MaxScripts bounds the number of scripts of a user.
	MaxScripts int
	// MaxSize bounds one script, in bytes.
	MaxSize int64
}

// Scripts is a user's Sieve scripts and the Sieve memory. It is safe for concurrent use.
type Scripts struct {
	db    *sql.DB
	stmts *stmtCache
	user  string
	own   bool // opened by OpenScripts: Close closes db
}

// Scripts returns the user's Sieve scripts, through the user's index. It is valid until
// the user is released.
func (u *User) Scripts() *Scripts { return &Scripts{db: u.db, stmts: &u.stmts, user: u.name} }

// OpenScripts opens user's scripts directly in the index of the store rooted at cfg.Dir,
// creating the user's directory and index when they do not exist yet, without reading
// the maildir: for tools that run beside a server (`portcullis sieve put`). Close it.
func OpenScripts(ctx context.Context, cfg Config, user string) (*Scripts, error) {
	domain, local, err := userPath(user)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.Dir, domain, local)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	dbPath := filepath.Join(dir, "index.sqlite")
	if err := private.DB(dbPath); err != nil {
		return nil, fmt.Errorf("store: index: %w", err)
	}
	db, err := sql.Open("sqlite", private.DSN(dbPath, "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("store: open index %s: %w", dbPath, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, sieveSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: index schema %s: %w", dbPath, err)
	}
	return &Scripts{db: db, stmts: &stmtCache{db: db}, user: local + "@" + domain, own: true}, nil
}

// Close closes what OpenScripts opened; it does nothing for User.Scripts.
func (s *Scripts) Close() error {
	if !s.own {
		return nil
	}
	s.stmts.close()
	return s.db.Close()
}

// User is the canonical name of the scripts' owner.
func (s *Scripts) User() string { return s.user }

func (s *Scripts) q() cachedQ { return cachedQ{c: s.stmts} }

// sqlQ is what the script queries need of a database or a transaction.
type sqlQ interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// tx runs fn in a write transaction, without the statement cache: preparing a cached
// statement takes a second connection while the transaction holds one, and a tool's
// database (OpenScripts) has one only.
func (s *Scripts) tx(ctx context.Context, fn func(q sqlQ) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: scripts of %s: %w", s.user, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: scripts of %s: %w", s.user, err)
	}
	return nil
}

// CheckScriptName reports whether name is a valid script name (RFC 5804 §1.6: not empty,
// UTF-8 in Unicode normalization form C, none of U+0000–U+001F, U+007F–U+009F, U+2028,
// U+2029), at most MaxScriptNameLen characters.
func CheckScriptName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadScriptName)
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxScriptNameLen || !norm.NFC.IsNormalString(name) {
		return fmt.Errorf("%w: %q", ErrBadScriptName, name)
	}
	for _, r := range name {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0x2028 || r == 0x2029 {
			return fmt.Errorf("%w: %q contains a control character", ErrBadScriptName, name)
		}
	}
	return nil
}

// List returns the user's scripts sorted by name.
func (s *Scripts) List(ctx context.Context) ([]ScriptInfo, error) {
	rows, err := s.q().QueryContext(ctx, `SELECT name, active, length(script), modified FROM sieve_script ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list scripts of %s: %w", s.user, err)
	}
	defer rows.Close()
	var out []ScriptInfo
	for rows.Next() {
		var si ScriptInfo
		var mod int64
		if err := rows.Scan(&si.Name, &si.Active, &si.Size, &mod); err != nil {
			return nil, fmt.Errorf("store: list scripts of %s: %w", s.user, err)
		}
		si.Modified = time.Unix(0, mod)
		out = append(out, si)
	}
	return out, rows.Err()
}

// Get returns a script's text, ErrNoScript when there is none by that name.
func (s *Scripts) Get(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	err := s.q().QueryRowContext(ctx, `SELECT script FROM sieve_script WHERE name = ?`, name).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", ErrNoScript, name)
	}
	if err != nil {
		return nil, fmt.Errorf("store: script %q of %s: %w", name, s.user, err)
	}
	return b, nil
}

// Active returns the active script's name and text; an empty name when none is active.
func (s *Scripts) Active(ctx context.Context) (string, []byte, error) {
	var name string
	var b []byte
	err := s.q().QueryRowContext(ctx, `SELECT name, script FROM sieve_script WHERE active <> 0`).Scan(&name, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("store: active script of %s: %w", s.user, err)
	}
	return name, b, nil
}

// CheckSpace reports whether a script of size bytes could be stored as name without
// exceeding lim (ManageSieve HAVESPACE, RFC 5804 §2.5): ErrScriptTooBig or
// ErrTooManyScripts (replacing an existing script does not add one).
func (s *Scripts) CheckSpace(ctx context.Context, name string, size int64, lim ScriptLimits) error {
	if err := CheckScriptName(name); err != nil {
		return err
	}
	return s.checkSpace(ctx, s.q(), name, size, lim)
}

func (s *Scripts) checkSpace(ctx context.Context, q sqlQ, name string, size int64, lim ScriptLimits) error {
	if lim.MaxSize > 0 && size > lim.MaxSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrScriptTooBig, size, lim.MaxSize)
	}
	if lim.MaxScripts <= 0 {
		return nil
	}
	var n int
	var exists bool
	err := q.QueryRowContext(ctx, `SELECT count(*), coalesce(max(name = ?), 0) FROM sieve_script`, name).Scan(&n, &exists)
	if err != nil {
		return fmt.Errorf("store: scripts of %s: %w", s.user, err)
	}
	if !exists && n >= lim.MaxScripts {
		return fmt.Errorf("%w: %d, at most %d", ErrTooManyScripts, n, lim.MaxScripts)
	}
	return nil
}

// Put stores text as the script name, replacing a script of that name (and keeping it
// active if it was), within lim. The caller has checked the script compiles.
func (s *Scripts) Put(ctx context.Context, name string, text []byte, lim ScriptLimits) error {
	if err := CheckScriptName(name); err != nil {
		return err
	}
	return s.tx(ctx, func(q sqlQ) error {
		if err := s.checkSpace(ctx, q, name, int64(len(text)), lim); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, `INSERT INTO sieve_script(name, script, modified) VALUES(?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET script = excluded.script, modified = excluded.modified`,
			name, text, time.Now().UnixNano())
		if err != nil {
			return fmt.Errorf("store: put script %q of %s: %w", name, s.user, err)
		}
		return nil
	})
}

// SetActive makes name the active script, deactivating the others; an empty name
// deactivates all (RFC 5804 §2.8). ErrNoScript when name does not exist.
func (s *Scripts) SetActive(ctx context.Context, name string) error {
	return s.tx(ctx, func(q sqlQ) error {
		if name != "" {
			var one int
			err := q.QueryRowContext(ctx, `SELECT 1 FROM sieve_script WHERE name = ?`, name).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %q", ErrNoScript, name)
			}
			if err != nil {
				return fmt.Errorf("store: scripts of %s: %w", s.user, err)
			}
		}
		if _, err := q.ExecContext(ctx, `UPDATE sieve_script SET active = 0 WHERE active <> 0 AND name <> ?`, name); err != nil {
			return fmt.Errorf("store: scripts of %s: %w", s.user, err)
		}
		if name == "" {
			return nil
		}
		if _, err := q.ExecContext(ctx, `UPDATE sieve_script SET active = 1 WHERE name = ?`, name); err != nil {
			return fmt.Errorf("store: activate %q of %s: %w", name, s.user, err)
		}
		return nil
	})
}

// Delete removes a script; ErrScriptActive for the active one (RFC 5804 §2.10),
// ErrNoScript when there is none by that name.
func (s *Scripts) Delete(ctx context.Context, name string) error {
	return s.tx(ctx, func(q sqlQ) error {
		var active bool
		err := q.QueryRowContext(ctx, `SELECT active FROM sieve_script WHERE name = ?`, name).Scan(&active)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNoScript, name)
		}
		if err != nil {
			return fmt.Errorf("store: scripts of %s: %w", s.user, err)
		}
		if active {
			return fmt.Errorf("%w: %q", ErrScriptActive, name)
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM sieve_script WHERE name = ?`, name); err != nil {
			return fmt.Errorf("store: delete script %q of %s: %w", name, s.user, err)
		}
		return nil
	})
}

// Rename renames a script, keeping it active if it was (RFC 5804 §2.11.1):
// ErrNoScript, ErrScriptExists.
func (s *Scripts) Rename(ctx context.Context, oldName, newName string) error {
	if err := CheckScriptName(newName); err != nil {
		return err
	}
	return s.tx(ctx, func(q sqlQ) error {
		var one int
		err := q.QueryRowContext(ctx, `SELECT 1 FROM sieve_script WHERE name = ?`, oldName).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNoScript, oldName)
		}
		if err != nil {
			return fmt.Errorf("store: scripts of %s: %w", s.user, err)
		}
		if oldName == newName {
			return nil
		}
		err = q.QueryRowContext(ctx, `SELECT 1 FROM sieve_script WHERE name = ?`, newName).Scan(&one)
		if err == nil {
			return fmt.Errorf("%w: %q", ErrScriptExists, newName)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: scripts of %s: %w", s.user, err)
		}
		if _, err := q.ExecContext(ctx, `UPDATE sieve_script SET name = ?, modified = ? WHERE name = ?`, newName, time.Now().UnixNano(), oldName); err != nil {
			return fmt.Errorf("store: rename script %q of %s: %w", oldName, s.user, err)
		}
		return nil
	})
}

// Remembered reports whether key was remembered (Remember) and has not expired at now:
// the Sieve memory of vacation replies sent and duplicate ids seen.
func (s *Scripts) Remembered(ctx context.Context, key string, now time.Time) (bool, error) {
	var exp int64
	err := s.q().QueryRowContext(ctx, `SELECT expires FROM sieve_memory WHERE key = ?`, key).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: sieve memory of %s: %w", s.user, err)
	}
	return now.UnixNano() < exp, nil
}

// Remember records key until the time until (replacing an earlier expiry), and forgets
// the entries that expired before now, so the memory holds only what can still matter.
func (s *Scripts) Remember(ctx context.Context, key string, now, until time.Time) error {
	return s.tx(ctx, func(q sqlQ) error {
		if _, err := q.ExecContext(ctx, `DELETE FROM sieve_memory WHERE expires <= ?`, now.UnixNano()); err != nil {
			return fmt.Errorf("store: sieve memory of %s: %w", s.user, err)
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO sieve_memory(key, expires) VALUES(?, ?)
			ON CONFLICT(key) DO UPDATE SET expires = excluded.expires`, key, until.UnixNano()); err != nil {
			return fmt.Errorf("store: sieve memory of %s: %w", s.user, err)
		}
		return nil
	})
}
