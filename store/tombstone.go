package store

import (
	"context"
	"fmt"
)

// Tombstones: the UIDs expunged from each mailbox with the modseq of their expunge, so
// that an IMAP client resynchronising with QRESYNC (RFC 7162 §3.2.5, §3.2.6) learns which
// of the messages it knew are gone (VANISHED (EARLIER)) without listing every UID.
//
// They are kept by triggers on the index, so every path that deletes message rows
// (EXPUNGE, MOVE, a maildir resync) leaves one: the modseq recorded is the mailbox's
// modseq plus one, the value the expunge's own modseq increment gives it (the row goes
// first, then the mailbox's modseq is raised in the same transaction). A deleted mailbox
// takes its tombstones with it; one that was never expunged from has none.
const tombstoneSchema = `
CREATE TABLE IF NOT EXISTS tombstone(
  mailbox_id INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  modseq INTEGER NOT NULL,
  PRIMARY KEY(mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstone_modseq ON tombstone(mailbox_id, modseq);
CREATE TRIGGER IF NOT EXISTS tombstone_on_expunge AFTER DELETE ON message
  WHEN EXISTS(SELECT 1 FROM mailbox WHERE id = old.mailbox_id)
BEGIN
  INSERT OR REPLACE INTO tombstone(mailbox_id, uid, modseq)
    VALUES(old.mailbox_id, old.uid, (SELECT modseq + 1 FROM mailbox WHERE id = old.mailbox_id));
END;
CREATE TRIGGER IF NOT EXISTS tombstone_on_mailbox_delete AFTER DELETE ON mailbox
BEGIN
  DELETE FROM tombstone WHERE mailbox_id = old.id;
END;
`

// Vanished returns, ascending, the UIDs expunged from mb after modseq (those whose
// expunge has a modseq above it).
func (u *User) Vanished(ctx context.Context, mb Mailbox, modseq uint64) ([]uint32, error) {
	rows, err := u.db.QueryContext(ctx, `SELECT uid FROM tombstone WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mb.ID, int64(min(modseq, 1<<63-1)))
	if err != nil {
		return nil, fmt.Errorf("store: vanished in %q: %w", mb.Name, err)
	}
	defer rows.Close()
	var uids []uint32
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			return nil, fmt.Errorf("store: vanished in %q: %w", mb.Name, err)
		}
		uids = append(uids, uid)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: vanished in %q: %w", mb.Name, err)
	}
	return uids, nil
}
