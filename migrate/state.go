package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis-mail/portcullis/internal/private"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver
)

// State is the migration's memory: per source folder its UIDVALIDITY, per message the
// target UID it was copied to (0 while the copy is only intended) and the SHA-256 of its
// bytes. It is safe for concurrent use by the runs of different users.
type State struct {
	db *sql.DB
}

const stateSchema = `
CREATE TABLE IF NOT EXISTS folder(
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  name TEXT NOT NULL,
  uidvalidity INTEGER NOT NULL DEFAULT 0,
  UNIQUE(source, name)
);
CREATE TABLE IF NOT EXISTS message(
  folder_id INTEGER NOT NULL REFERENCES folder(id) ON DELETE CASCADE,
  src_id TEXT NOT NULL,
  target TEXT NOT NULL,
  target_uid INTEGER NOT NULL DEFAULT 0,
  uidnext_before INTEGER NOT NULL DEFAULT 0,
  hash TEXT NOT NULL DEFAULT '',
  size INTEGER NOT NULL DEFAULT 0,
  flags TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(folder_id, src_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_target ON message(target, target_uid);
`

// OpenState opens (creating) the state database at path.
func OpenState(path string) (*State, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("migrate: state %s: %w", path, err)
	}
	// synchronous(FULL): an intent must be on disk before the append it announces, or a
	// power loss could leave a copied message that no record knows of.
	// The path is escaped: SQLite's URI parsing would cut it at '#' or '?' and decode '%'
	// (a user name may hold them), opening another file without these pragmas.
	dsn := private.DSN(path, "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate")
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("migrate: state %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(stateSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: state %s: %w", path, err)
	}
	return &State{db: db}, nil
}

// Close closes the database.
func (s *State) Close() error { return s.db.Close() }

// folderState is a source folder's record.
type folderState struct {
	id          int64
	uidValidity uint32
}

// record is one message's record.
type record struct {
	srcID         string
	target        string
	targetUID     uint32
	uidnextBefore uint32
	hash          string
	size          int64
	flags         string
}

// folder returns the folder's record, creating it unless dry (a dry run writes nothing;
// a folder never seen has id 0 and no records).
func (s *State) folder(ctx context.Context, source, name string, dry bool) (folderState, error) {
	var f folderState
	var err error
	if dry {
		err = s.db.QueryRowContext(ctx, `SELECT id, uidvalidity FROM folder WHERE source = ? AND name = ?`, source, name).Scan(&f.id, &f.uidValidity)
		if errors.Is(err, sql.ErrNoRows) {
			return folderState{}, nil
		}
	} else {
		_, err = s.db.ExecContext(ctx, `INSERT INTO folder(source, name) VALUES(?, ?) ON CONFLICT DO NOTHING`, source, name)
	}
	if err == nil && !dry {
		err = s.db.QueryRowContext(ctx, `SELECT id, uidvalidity FROM folder WHERE source = ? AND name = ?`, source, name).Scan(&f.id, &f.uidValidity)
	}
	if err != nil {
		return f, fmt.Errorf("migrate: state of %s %q: %w", source, name, err)
	}
	return f, nil
}

func (s *State) setUIDValidity(ctx context.Context, f folderState, v uint32) error {
	_, err := s.db.ExecContext(ctx, `UPDATE folder SET uidvalidity = ? WHERE id = ?`, v, f.id)
	return err
}

func (s *State) records(ctx context.Context, f folderState) (map[string]*record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT src_id, target, target_uid, uidnext_before, hash, size, flags FROM message WHERE folder_id = ?`, f.id)
	if err != nil {
		return nil, fmt.Errorf("migrate: state records: %w", err)
	}
	defer rows.Close()
	out := map[string]*record{}
	for rows.Next() {
		r := &record{}
		if err := rows.Scan(&r.srcID, &r.target, &r.targetUID, &r.uidnextBefore, &r.hash, &r.size, &r.flags); err != nil {
			return nil, fmt.Errorf("migrate: state records: %w", err)
		}
		out[r.srcID] = r
	}
	return out, rows.Err()
}

// recordsOf returns the records of the given source ids.
func (s *State) recordsOf(ctx context.Context, f folderState, ids []string) (map[string]*record, error) {
	out := map[string]*record{}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := []any{f.id}
		for _, id := range ids[:n] {
			args = append(args, id)
		}
		q := `SELECT src_id, target, target_uid, uidnext_before, hash, size, flags FROM message WHERE folder_id = ? AND src_id IN (?` +
			strings.Repeat(",?", n-1) + `)`
		ids = ids[n:]
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("migrate: state records: %w", err)
		}
		for rows.Next() {
			r := &record{}
			if err := rows.Scan(&r.srcID, &r.target, &r.targetUID, &r.uidnextBefore, &r.hash, &r.size, &r.flags); err != nil {
				rows.Close()
				return nil, fmt.Errorf("migrate: state records: %w", err)
			}
			out[r.srcID] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("migrate: state records: %w", err)
		}
	}
	return out, nil
}

// eachRecord calls fn with every record's source id and target UID.
func (s *State) eachRecord(ctx context.Context, f folderState, fn func(id string, targetUID uint32)) error {
	rows, err := s.db.QueryContext(ctx, `SELECT src_id, target_uid FROM message WHERE folder_id = ?`, f.id)
	if err != nil {
		return fmt.Errorf("migrate: state records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var uid uint32
		if err := rows.Scan(&id, &uid); err != nil {
			return fmt.Errorf("migrate: state records: %w", err)
		}
		fn(id, uid) // fn must not use the state: its one connection holds these rows
	}
	return rows.Err()
}

// count returns the number of records of f.
func (s *State) count(ctx context.Context, f folderState) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM message WHERE folder_id = ?`, f.id).Scan(&n)
	return n, err
}

// claimed returns the target UIDs of target folder (of user key) that some record holds.
func (s *State) claimed(ctx context.Context, target string) (map[uint32]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT target_uid FROM message WHERE target = ? AND target_uid <> 0`, target)
	if err != nil {
		return nil, fmt.Errorf("migrate: state: %w", err)
	}
	defer rows.Close()
	out := map[uint32]bool{}
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}

// intend records, in one durable transaction, that the messages are about to be appended
// to target, whose UIDNEXT is uidnext.
func (s *State) intend(ctx context.Context, f folderState, target string, uidnext uint32, msgs []SourceMessage) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, m := range msgs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO message(folder_id, src_id, target, uidnext_before, size, flags) VALUES(?,?,?,?,?,?)
				ON CONFLICT(folder_id, src_id) DO UPDATE SET target = excluded.target, target_uid = 0, uidnext_before = excluded.uidnext_before`,
				f.id, m.ID, target, uidnext, m.Size, flagKey(m.Flags)); err != nil {
				return err
			}
		}
		return nil
	})
}

// done records where messages were copied, in one transaction. A batch that is lost
// in a crash leaves intents, which the next run reconciles by content.
func (s *State) done(ctx context.Context, f folderState, rs []*record) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO message(folder_id, src_id, target, target_uid, hash, size, flags) VALUES(?,?,?,?,?,?,?)
		ON CONFLICT(folder_id, src_id) DO UPDATE SET target = excluded.target, target_uid = excluded.target_uid, hash = excluded.hash, size = excluded.size, flags = excluded.flags`,
				f.id, r.srcID, r.target, r.targetUID, r.hash, r.size, r.flags); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *State) setFlags(ctx context.Context, f folderState, srcID, flags string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE message SET flags = ? WHERE folder_id = ? AND src_id = ?`, flags, f.id, srcID)
	return err
}

func (s *State) forget(ctx context.Context, f folderState, srcIDs []string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, id := range srcIDs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM message WHERE folder_id = ? AND src_id = ?`, f.id, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// rekey moves every record of f under a new source id space (the folder's UIDVALIDITY
// changed): the records are kept by hash under "#HASH#n" ids, and matched again by
// content as the folder is copied.
func (s *State) rekey(ctx context.Context, f folderState, uidValidity uint32) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT src_id, hash FROM message WHERE folder_id = ?`, f.id)
		if err != nil {
			return err
		}
		type kv struct{ id, hash string }
		var all []kv
		for rows.Next() {
			var x kv
			if err := rows.Scan(&x.id, &x.hash); err != nil {
				rows.Close()
				return err
			}
			all = append(all, x)
		}
		rows.Close()
		n := map[string]int{}
		for _, x := range all {
			if x.hash == "" || strings.HasPrefix(x.id, "#") {
				if _, err := tx.ExecContext(ctx, `DELETE FROM message WHERE folder_id = ? AND src_id = ? AND target_uid = 0`, f.id, x.id); err != nil {
					return err
				}
				continue
			}
			n[x.hash]++
			if _, err := tx.ExecContext(ctx, `UPDATE message SET src_id = ? WHERE folder_id = ? AND src_id = ?`,
				fmt.Sprintf("#%s#%d", x.hash, n[x.hash]), f.id, x.id); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE folder SET uidvalidity = ? WHERE id = ?`, uidValidity, f.id)
		return err
	})
}

// rename gives a record a new source id.
func (s *State) rename(ctx context.Context, f folderState, from, to string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE message SET src_id = ? WHERE folder_id = ? AND src_id = ?`, to, f.id, from)
	return err
}

func (s *State) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: state: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("migrate: state: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: state: %w", err)
	}
	return nil
}
