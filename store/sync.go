package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/store/maildir"
)

// discoverLocked makes the index list exactly the folders on disk: INBOX always, ".X"
// Maildir++ folders found on disk are added (the index was lost or another program
// created them), index rows whose folder vanished are dropped.
func (u *User) discoverLocked(ctx context.Context) error {
	onDisk := map[string]bool{Inbox: true}
	des, err := os.ReadDir(string(u.root))
	if err != nil {
		return fmt.Errorf("store: read %s: %w", u.root, err)
	}
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		if name, ok := mailboxFromDir(de.Name()); ok && maildir.Dir(filepath.Join(string(u.root), de.Name())).Exists() {
			onDisk[name] = true
		}
	}
	all, err := u.Mailboxes(ctx)
	if err != nil {
		return err
	}
	inIndex := map[string]bool{}
	for _, mb := range all {
		inIndex[mb.Name] = true
		if !onDisk[mb.Name] {
			u.forgetIDs()
			if _, err := u.q(nil).ExecContext(ctx, `DELETE FROM mailbox WHERE id = ?`, mb.ID); err != nil {
				return fmt.Errorf("store: drop vanished folder %q: %w", mb.Name, err)
			}
			u.publish(mb.ID, Event{Kind: MailboxDeleted})
		}
	}
	for name := range onDisk {
		if inIndex[name] {
			continue
		}
		use := u.store.cfg.SpecialUse[name]
		if err := u.createLocked(ctx, name, use); err != nil {
			return err
		}
		// Folders found on disk (a new user's INBOX, a migrated maildir) start subscribed;
		// a folder made by CREATE does not (RFC 3501 §6.3.3).
		if err := u.addSubscription(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// Rebuild re-reads the folder list from disk and resynchronizes every folder's index.
func (u *User) Rebuild(ctx context.Context) error {
	u.mu.Lock()
	err := u.discoverLocked(ctx)
	u.mu.Unlock()
	if err != nil {
		return err
	}
	all, err := u.Mailboxes(ctx)
	if err != nil {
		return err
	}
	for _, mb := range all {
		if err := u.Sync(ctx, mb.Name); err != nil {
			return err
		}
	}
	return nil
}

func dirStamp(d maildir.Dir) string {
	var b strings.Builder
	for _, sub := range []string{maildir.New, maildir.Cur} {
		fi, err := os.Stat(filepath.Join(string(d), sub))
		if err != nil {
			return ""
		}
		fmt.Fprintf(&b, "%d.%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String()
}

// Sync brings a folder's index up to date with its maildir when the new or cur directory
// changed since the last sync: files the index lacks get UIDs (in key order, which is
// delivery order), rows whose files vanished are expunged, and flags changed by renames
// (another maildir reader) are taken over, keeping the index's keywords.
func (u *User) Sync(ctx context.Context, name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	mb, err := u.mailboxLocked(ctx, name)
	if err != nil {
		return err
	}
	d := u.folder(mb.Name)
	stamp := dirStamp(d)
	var last string
	if err := u.q(nil).QueryRowContext(ctx, `SELECT dir_mtime FROM mailbox WHERE id = ?`, mb.ID).Scan(&last); err != nil {
		return fmt.Errorf("store: sync %q: %w", name, err)
	}
	if stamp != "" && stamp == last && time.Since(u.scanned[mb.ID]) < u.store.cfg.FullScanInterval {
		return nil
	}
	if u.scanned == nil {
		u.scanned = map[int64]time.Time{}
	}
	u.scanned[mb.ID] = time.Now()
	entries, err := d.Scan()
	if err != nil {
		if !d.Exists() {
			// Folder removed behind our back.
			return u.discoverLocked(ctx)
		}
		return err
	}
	msgs, err := u.messages(ctx, u.q(nil), true, mb.ID, "")
	if err != nil {
		return err
	}
	byKey := make(map[string]maildir.Entry, len(entries))
	for _, e := range entries {
		byKey[e.Name.Key] = e
	}
	indexed := make(map[string]bool, len(msgs))
	// The files of APPENDs waiting for their commit are theirs to index: a row made here
	// could be expunged by another session before that commit, which then indexed a
	// message whose file was gone (imaptest's stress: STORE ... NO [SERVERBUG]).
	for k := range u.pendingAppends(mb.ID) {
		indexed[k] = true
	}
	var gone []uint32
	var changed []Message
	var added []uint32
	err = u.tx(ctx, func(q cachedQ) error {
		var cur Mailbox
		cur, err := scanMailbox(q.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailbox WHERE id = ?`, mb.ID))
		if err != nil {
			return err
		}
		modseq, uid := cur.ModSeq, cur.UIDNext
		for _, m := range msgs {
			indexed[m.Key] = true
			e, ok := byKey[m.Key]
			if !ok {
				gone = append(gone, m.UID)
				continue
			}
			file := e.Sub + "/" + e.File()
			if file == m.File {
				continue
			}
			nf := m.Flags
			if e.Name.HasInfo && e.Name.Info == "" { // Dovecot may flag files still in new
				nf = mergeMaildirFlags(m.Flags, e.Name.Flags)
			}
			flagsChanged := joinFlags(nf) != joinFlags(m.Flags)
			if flagsChanged {
				modseq++
				m.ModSeq = modseq
			}
			m.Flags, m.File = nf, file
			if _, err := q.ExecContext(ctx, `UPDATE message SET file = ?, flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?`,
				file, joinFlags(nf), m.ModSeq, mb.ID, m.UID); err != nil {
				return err
			}
			if flagsChanged {
				changed = append(changed, m)
			}
		}
		if err := u.deleteUIDs(ctx, q, mb.ID, gone); err != nil {
			return err
		}
		if len(gone) > 0 {
			modseq++
		}
		for _, e := range entries { // sorted by key
			if indexed[e.Name.Key] {
				continue
			}
			fi, err := os.Stat(d.Path(e.Sub, e.File()))
			if err != nil {
				continue // renamed or removed meanwhile; the next sync sees it
			}
			var flags []string
			if e.Name.HasInfo && e.Name.Info == "" {
				flags = mergeMaildirFlags(nil, e.Name.Flags)
			}
			modseq++
			// Files written by other programs often have bare LF line ends; reading the file
			// once here gives POP3 and IMAP the size they will send.
			if _, err := q.ExecContext(ctx, `INSERT INTO message(mailbox_id, uid, key, file, flags, modseq, internal_date, size, crlf_size) VALUES(?,?,?,?,?,?,?,?,?)`,
				mb.ID, uid, e.Name.Key, e.Sub+"/"+e.File(), joinFlags(flags), modseq, fi.ModTime().UnixNano(), fi.Size(), crlfSize(d.Path(e.Sub, e.File()))); err != nil {
				return err
			}
			added = append(added, uid)
			uid++
		}
		_, err = q.ExecContext(ctx, `UPDATE mailbox SET uidnext = ?, modseq = ?, dir_mtime = ? WHERE id = ?`, uid, modseq, stamp, mb.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: sync %q: %w", name, err)
	}
	if len(gone) > 0 {
		u.publish(mb.ID, Event{Kind: Expunged, UIDs: gone})
	}
	if len(changed) > 0 {
		u.publish(mb.ID, Event{Kind: FlagsChanged, Messages: changed})
	}
	if len(added) > 0 {
		u.publish(mb.ID, Event{Kind: Appended, UIDs: added})
	}
	return nil
}

// CleanTmp removes interrupted deliveries older than 36 hours from every folder's tmp.
func (u *User) CleanTmp(ctx context.Context) error {
	all, err := u.Mailboxes(ctx)
	if err != nil {
		return err
	}
	for _, mb := range all {
		if _, err := u.folder(mb.Name).CleanTmp(36 * time.Hour); err != nil {
			return err
		}
	}
	return nil
}
