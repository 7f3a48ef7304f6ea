package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// migrateSchema holds what a migration keeps beside a message that the index did not:
// the POP3 unique-id the message had at the old server (RFC 1939 §7: clients that leave
// mail on the server remember it, and would download everything again if it changed).
// A row goes with its message (the trigger), so an expunge leaves nothing behind.
const migrateSchema = `
CREATE TABLE IF NOT EXISTS message_uidl(
  mailbox_id INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
  uid INTEGER NOT NULL,
  uidl TEXT NOT NULL,
  PRIMARY KEY(mailbox_id, uid)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS message_uidl_gc AFTER DELETE ON message BEGIN
  DELETE FROM message_uidl WHERE mailbox_id = OLD.mailbox_id AND uid = OLD.uid;
END;
`

// MaxUIDLLen is the longest POP3 unique-id (RFC 1939 §7).
const MaxUIDLLen = 70

// ValidUIDL reports whether s can be a POP3 unique-id: 1 to 70 characters 0x21–0x7E.
func ValidUIDL(s string) bool {
	if s == "" || len(s) > MaxUIDLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// SetUIDL records the POP3 unique-id a migrated message had at its old server; POP3 then
// shows it instead of the maildir key. An empty uidl removes it.
func (u *User) SetUIDL(ctx context.Context, mb Mailbox, uid uint32, uidl string) error {
	if uidl != "" && !ValidUIDL(uidl) {
		return fmt.Errorf("%w: POP3 unique-id %q", ErrBadName, uidl)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.tx(ctx, func(q cachedQ) error {
		if uidl == "" {
			_, err := q.ExecContext(ctx, `DELETE FROM message_uidl WHERE mailbox_id = ? AND uid = ?`, mb.ID, uid)
			return err
		}
		var n int
		if err := q.QueryRowContext(ctx, `SELECT count(*) FROM message WHERE mailbox_id = ? AND uid = ?`, mb.ID, uid).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: uid %d in %q", ErrNoMessage, uid, mb.Name)
		}
		_, err := q.ExecContext(ctx, `INSERT INTO message_uidl(mailbox_id, uid, uidl) VALUES(?,?,?)
			ON CONFLICT(mailbox_id, uid) DO UPDATE SET uidl = excluded.uidl`, mb.ID, uid, uidl)
		return err
	})
}

// SetUIDLs is SetUIDL for many messages of a folder, in one transaction.
func (u *User) SetUIDLs(ctx context.Context, mb Mailbox, uidls map[uint32]string) error {
	for _, s := range uidls {
		if !ValidUIDL(s) {
			return fmt.Errorf("%w: POP3 unique-id %q", ErrBadName, s)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.tx(ctx, func(q cachedQ) error {
		for uid, s := range uidls {
			if _, err := q.ExecContext(ctx, `INSERT INTO message_uidl(mailbox_id, uid, uidl) SELECT ?, ?, ? WHERE EXISTS(SELECT 1 FROM message WHERE mailbox_id = ? AND uid = ?)
				ON CONFLICT(mailbox_id, uid) DO UPDATE SET uidl = excluded.uidl`, mb.ID, uid, s, mb.ID, uid); err != nil {
				return err
			}
		}
		return nil
	})
}

// UIDLs returns the POP3 unique-ids recorded by SetUIDL for the folder's messages, by UID.
func (u *User) UIDLs(ctx context.Context, mb Mailbox) (map[uint32]string, error) {
	rows, err := u.q(nil).QueryContext(ctx, `SELECT uid, uidl FROM message_uidl WHERE mailbox_id = ?`, mb.ID)
	if err != nil {
		return nil, fmt.Errorf("store: uidls of %q of %s: %w", mb.Name, u.name, err)
	}
	defer rows.Close()
	out := map[uint32]string{}
	for rows.Next() {
		var uid uint32
		var s string
		if err := rows.Scan(&uid, &s); err != nil {
			return nil, fmt.Errorf("store: uidls of %q of %s: %w", mb.Name, u.name, err)
		}
		out[uid] = s
	}
	return out, rows.Err()
}

// SetInternalDate changes a message's internal date with its zone (and its file's mtime,
// the instant, which Dovecot reads as the received date). A migration uses it to repair a
// message whose append was interrupted after the file was written but before its date was
// recorded.
func (u *User) SetInternalDate(ctx context.Context, mb Mailbox, uid uint32, date time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	ms, err := u.messagesByUIDIn(ctx, u.q(nil), mb, []uint32{uid}, true)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		return fmt.Errorf("%w: uid %d in %q", ErrNoMessage, uid, mb.Name)
	}
	if e, err := u.entry(u.folder(mb.Name), ms[0]); err == nil {
		_ = os.Chtimes(filepath.Join(string(u.folder(mb.Name)), e.File()), date, date)
	}
	return u.tx(ctx, func(q cachedQ) error {
		_, err := q.ExecContext(ctx, `UPDATE message SET internal_date = ?, internal_zone = ? WHERE mailbox_id = ? AND uid = ?`,
			date.UnixNano(), zoneOffset(date), mb.ID, uid)
		return err
	})
}

// KeepUIDs makes an empty folder that has never held a message take the UIDVALIDITY of
// the folder it is imported from (RFC 3501 §2.3.1.1), so that clients' caches stay valid
// across a migration. It reports whether it did; a folder that has held messages keeps
// its own (a UID must never name two messages in one UIDVALIDITY epoch).
func (u *User) KeepUIDs(ctx context.Context, name string, uidValidity uint32) (bool, error) {
	if uidValidity == 0 {
		return false, nil
	}
	cn, err := CanonicalMailbox(name)
	if err != nil {
		return false, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	done := false
	err = u.tx(ctx, func(q cachedQ) error {
		res, err := q.ExecContext(ctx, `UPDATE mailbox SET uidvalidity = ? WHERE name = ? AND uidnext = 1
			AND NOT EXISTS(SELECT 1 FROM message WHERE mailbox_id = mailbox.id)`, uidValidity, cn)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		done = n > 0
		return err
	})
	return done, err
}

// UserDir returns the directory of user's mail and index below the store's root (where a
// migration keeps its state beside the user's index).
func (s *Store) UserDir(user string) (string, error) {
	domain, local, err := userPath(user)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.cfg.Dir, domain, local), nil
}

// Prepared is a message whose file is on disk (fsynced) but not yet in the index: a
// migration writes many in parallel, then makes them visible in its own order with one
// CommitPrepared (one index transaction), keeping the source's order of UIDs.
type Prepared struct {
	req  *appendReq
	name string
}

// Prepare writes a message's file as Append does, without indexing it. A Prepared that
// is never committed is indexed by the next Sync of its folder, like a file another
// program dropped there.
func (u *User) Prepare(ctx context.Context, name string, r io.Reader, flags []string, date time.Time, wantUID uint32) (*Prepared, error) {
	req, err := u.prepareAppend(ctx, name, r, flags, date)
	if err != nil {
		return nil, err
	}
	// Not pending for Sync, so that one never committed is still indexed (commitAppends
	// takes a file Sync indexed meanwhile as it is).
	u.setAppending(req.key, 0)
	req.wantUID = wantUID
	return &Prepared{req: req, name: name}, nil
}

// CommitPrepared indexes ps in order, in one durable transaction; each message's UID is
// at least its wantUID. It returns the results in the same order; a message that failed
// (over quota, its folder deleted) has its error and its file removed.
func (u *User) CommitPrepared(ctx context.Context, ps []*Prepared) ([]AppendResult, []error) {
	batch := make([]*appendReq, len(ps))
	for i, p := range ps {
		batch[i] = p.req
	}
	u.mu.Lock()
	u.commitAppends(batch)
	u.mu.Unlock()
	res := make([]AppendResult, len(ps))
	errs := make([]error, len(ps))
	for i, p := range ps {
		res[i] = p.req.res
		if p.req.err != nil {
			errs[i] = fmt.Errorf("store: append to %q: %w", p.name, p.req.err)
		}
	}
	return res, errs
}
