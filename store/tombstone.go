package store

import (
	"context"
	"database/sql"
	"errors"
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
CREATE TABLE IF NOT EXISTS tombstone_horizon(
  mailbox_id INTEGER PRIMARY KEY,
  modseq INTEGER NOT NULL DEFAULT 0,
  added INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS tombstone_horizon_on_mailbox_delete AFTER DELETE ON mailbox
BEGIN
  DELETE FROM tombstone_horizon WHERE mailbox_id = old.id;
END;
`

// Tombstones are pruned, as Dovecot drops old expunges from its transaction log: a
// mailbox keeps at least the newest Config.ExpungesKept of them and at most twice as many
// (pruning to the lower bound when the upper is reached spreads the cost of a prune, a
// walk of ExpungesKept index entries, over as many expunges). The highest modseq
// pruned is the mailbox's horizon (table tombstone_horizon, which also counts the
// tombstones added since the last prune): a client resynchronising from a modseq below it
// may miss expunges in the tombstones, and is answered from the UIDs still present
// instead (Vanished's complete result; RFC 7162 §3.2.5.2).
// pruneTombstones counts added new tombstones of mailbox mbID and prunes when due;
// called in the transaction that deleted the messages.
func (u *User) pruneTombstones(ctx context.Context, q cachedQ, mbID int64, added int) error {
	keep := u.store.cfg.ExpungesKept
	var n int64
	if err := q.QueryRowContext(ctx, `INSERT INTO tombstone_horizon(mailbox_id, added) VALUES(?, ?)
  ON CONFLICT(mailbox_id) DO UPDATE SET added = added + excluded.added RETURNING added`, mbID, added).Scan(&n); err != nil {
		return fmt.Errorf("count tombstones: %w", err)
	}
	if n < 2*int64(keep) {
		return nil
	}
	// The keep+1-th newest tombstone's modseq becomes the horizon; it and all older go.
	var horizon int64
	err := q.QueryRowContext(ctx, `SELECT modseq FROM tombstone WHERE mailbox_id = ? ORDER BY modseq DESC LIMIT 1 OFFSET ?`, mbID, keep).Scan(&horizon)
	if errors.Is(err, sql.ErrNoRows) {
		// Fewer than counted (tombstones replaced, or kept before counting began).
		_, err = q.ExecContext(ctx, `UPDATE tombstone_horizon SET added = (SELECT count(*) FROM tombstone WHERE mailbox_id = ?1) WHERE mailbox_id = ?1`, mbID)
		return err
	}
	if err != nil {
		return fmt.Errorf("prune tombstones: %w", err)
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM tombstone WHERE mailbox_id = ? AND modseq <= ?`, mbID, horizon); err != nil {
		return fmt.Errorf("prune tombstones: %w", err)
	}
	_, err = q.ExecContext(ctx, `UPDATE tombstone_horizon SET modseq = max(modseq, ?2), added = (SELECT count(*) FROM tombstone WHERE mailbox_id = ?1) WHERE mailbox_id = ?1`, mbID, horizon)
	return err
}

// Vanished returns, ascending, the UIDs expunged from mb after modseq (those whose
// expunge has a modseq above it). complete is false when tombstones the answer needs
// were pruned (modseq is below the mailbox's horizon): uids are then only some of them,
// and any UID below UIDNEXT not in the mailbox may have been expunged after modseq.
func (u *User) Vanished(ctx context.Context, mb Mailbox, modseq uint64) (uids []uint32, complete bool, err error) {
	since := int64(min(modseq, 1<<63-1))
	rows, err := u.db.QueryContext(ctx, `SELECT uid FROM tombstone WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mb.ID, since)
	if err != nil {
		return nil, false, fmt.Errorf("store: vanished in %q: %w", mb.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			return nil, false, fmt.Errorf("store: vanished in %q: %w", mb.Name, err)
		}
		uids = append(uids, uid)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: vanished in %q: %w", mb.Name, err)
	}
	// The horizon is read after the tombstones: a prune in between makes the answer
	// needlessly incomplete, never wrongly complete.
	var horizon int64
	if err := u.db.QueryRowContext(ctx, `SELECT modseq FROM tombstone_horizon WHERE mailbox_id = ?`, mb.ID).Scan(&horizon); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, false, fmt.Errorf("store: vanished in %q: %w", mb.Name, err)
	}
	return uids, since >= horizon, nil
}
