package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/store/maildir"
)

// User is one user's part of the store, obtained with Store.Open. Its methods are safe for
// concurrent use; writes are serialized per user.
type User struct {
	store *Store
	name  string
	dir   string
	root  maildir.Dir
	db    *sql.DB   // the index, synchronous=FULL: commits are fsynced
	stmts stmtCache // prepared statements of db
	// lazy is the same index through connections with synchronous=NORMAL (lazyTx).
	lazy      *sql.DB
	lazyStmts stmtCache

	refs    int // guarded by store.mu
	ready   chan struct{}
	openErr error

	mu      sync.Mutex          // serializes changes to the index and the maildir files
	scanned map[int64]time.Time // last full directory scan per mailbox; guarded by mu

	amu       sync.Mutex       // guards appendQ and appending
	appendQ   []*appendReq     // appends waiting for their index commit (group commit)
	appending map[string]int64 // their files' keys → mailbox id, for Sync to leave alone

	idmu  sync.Mutex
	ids   map[string]int64 // canonical folder name → mailbox id, for Append
	idGen uint64           // bumped when folders are deleted or renamed
}

// Mailbox is a folder's index record.
type Mailbox struct {
	ID          int64
	Name        string
	UIDValidity uint32
	UIDNext     uint32
	ModSeq      uint64
	Subscribed  bool
	SpecialUse  string
}

// Message is one message's index record.
type Message struct {
	UID          uint32
	Key          string // maildir key
	File         string // "new/KEY" or "cur/KEY:2,FLAGS"
	Flags        []string
	ModSeq       uint64
	InternalDate time.Time
	Size         int64
	// SizeCRLF is the size with every bare LF counted as CRLF, as POP3 and IMAP send the
	// message (RFC 1939 §11, RFC 3501 §2.3.4); equal to Size for CRLF files.
	SizeCRLF int64
	Envelope []byte // cached by CacheEnvelope; read by MessagesByUID only, nil otherwise
}

// Status summarizes a mailbox.
type Status struct {
	Mailbox
	Messages uint32
	Unseen   uint32
	Deleted  uint32
	Size     int64
}

// Name is the canonical user name (local@domain).
func (u *User) Name() string { return u.name }

// Release returns the handle to the store.
func (u *User) Release() { u.store.Release(u) }

func (u *User) folder(name string) maildir.Dir { return maildir.Dir(folderDir(string(u.root), name)) }

// Watch returns a watcher for the mailbox's changes. Close it when done.
func (u *User) Watch(mb Mailbox) *Watcher { return u.store.hub.watch(u.name, mb.ID) }

func (u *User) publish(mb int64, ev Event) { u.store.hub.publish(u.name, mb, ev) }

const mailboxCols = `id, name, uidvalidity, uidnext, modseq, EXISTS(SELECT 1 FROM subscription s WHERE s.name = mailbox.name), special_use`

func scanMailbox(sc interface{ Scan(...any) error }) (Mailbox, error) {
	var mb Mailbox
	var sub int
	err := sc.Scan(&mb.ID, &mb.Name, &mb.UIDValidity, &mb.UIDNext, &mb.ModSeq, &sub, &mb.SpecialUse)
	mb.Subscribed = sub != 0
	return mb, err
}

// Mailboxes lists the user's folders sorted by name, INBOX first.
func (u *User) Mailboxes(ctx context.Context) ([]Mailbox, error) {
	rows, err := u.q(nil).QueryContext(ctx, `SELECT `+mailboxCols+` FROM mailbox ORDER BY name <> 'INBOX', name`)
	if err != nil {
		return nil, fmt.Errorf("store: list mailboxes of %s: %w", u.name, err)
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		mb, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list mailboxes of %s: %w", u.name, err)
		}
		out = append(out, mb)
	}
	return out, rows.Err()
}

// Mailbox returns a folder's record.
func (u *User) Mailbox(ctx context.Context, name string) (Mailbox, error) {
	return u.mailboxLocked(ctx, name)
}

// mailboxID returns a folder's id and canonical name, remembered between calls: Append
// needs no more, and looking it up in the index was a read transaction per message. A
// folder deleted meanwhile is caught at commit (commitAppends finds no row).
func (u *User) mailboxID(ctx context.Context, name string) (int64, string, error) {
	cn, err := CanonicalMailbox(name)
	if err != nil {
		return 0, "", err
	}
	u.idmu.Lock()
	id, ok := u.ids[cn]
	gen := u.idGen
	u.idmu.Unlock()
	if ok {
		return id, cn, nil
	}
	mb, err := u.mailboxLocked(ctx, cn)
	if err != nil {
		return 0, "", err
	}
	u.idmu.Lock()
	if u.idGen == gen { // not if a delete or rename ran during the lookup
		if u.ids == nil {
			u.ids = map[string]int64{}
		}
		u.ids[cn] = mb.ID
	}
	u.idmu.Unlock()
	return mb.ID, mb.Name, nil
}

// forgetIDs drops the remembered folder ids; call it when folders go away or move.
func (u *User) forgetIDs() {
	u.idmu.Lock()
	u.ids = nil
	u.idGen++
	u.idmu.Unlock()
}

func (u *User) mailboxLocked(ctx context.Context, name string) (Mailbox, error) {
	cn, err := CanonicalMailbox(name)
	if err != nil {
		return Mailbox{}, err
	}
	mb, err := scanMailbox(u.q(nil).QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailbox WHERE name = ?`, cn))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("%w: %q", ErrNoMailbox, name)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox %q of %s: %w", name, u.name, err)
	}
	return mb, nil
}

// nextUIDValidity returns a UIDVALIDITY never used before by this user (RFC 3501 §2.3.1.1:
// it must change whenever UIDs of a name are not kept, including delete and re-create and
// a lost index). The last value is kept in the index and, so that a rebuilt index does not
// repeat it, in a small file beside it.
func (u *User) nextUIDValidity(ctx context.Context, q cachedQ) (uint32, error) {
	var last int64
	err := q.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'uidvalidity'`).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	hintPath := filepath.Join(u.dir, "uidvalidity")
	if b, err := os.ReadFile(hintPath); err == nil {
		if h, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && h > last {
			last = h
		}
	}
	v := time.Now().Unix()
	if v <= last {
		v = last + 1
	}
	v &= 0xffffffff
	if v == 0 {
		v = 1
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO meta(k, v) VALUES('uidvalidity', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, v); err != nil {
		return 0, err
	}
	tmp := hintPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(v, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, hintPath); err != nil {
		return 0, fmt.Errorf("rename %s: %w", tmp, err)
	}
	return uint32(v), nil
}

// Create makes a folder (and its missing parents), with an optional special-use attribute.
func (u *User) Create(ctx context.Context, name, specialUse string) error {
	cn, err := CanonicalMailbox(name)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	parts := strings.Split(cn, string(Delimiter))
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], string(Delimiter))
		if _, err := u.mailboxLocked(ctx, parent); errors.Is(err, ErrNoMailbox) {
			if err := u.createLocked(ctx, parent, ""); err != nil {
				return err
			}
		}
	}
	return u.createLocked(ctx, cn, specialUse)
}

func (u *User) createLocked(ctx context.Context, cn, specialUse string) error {
	if _, err := u.mailboxLocked(ctx, cn); err == nil {
		return fmt.Errorf("%w: %q", ErrMailboxExists, cn)
	}
	var n int
	if err := u.q(nil).QueryRowContext(ctx, `SELECT count(*) FROM mailbox`).Scan(&n); err != nil {
		return fmt.Errorf("store: count mailboxes: %w", err)
	}
	if n >= u.store.cfg.MaxMailboxes {
		return fmt.Errorf("%w: %d", ErrTooMany, n)
	}
	if err := u.folder(cn).Create(); err != nil {
		return err
	}
	if cn != Inbox {
		// Maildir++: a folder holds an empty "maildirfolder" file (Courier/Dovecot).
		f, err := os.OpenFile(filepath.Join(string(u.folder(cn)), "maildirfolder"), os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
	}
	return u.tx(ctx, func(q cachedQ) error {
		v, err := u.nextUIDValidity(ctx, q)
		if err != nil {
			return err
		}
		_, err = q.ExecContext(ctx, `INSERT INTO mailbox(name, uidvalidity, uidnext, special_use) VALUES(?, ?, 1, ?)`, cn, v, specialUse)
		return err
	})
}

// tx runs fn in a durable transaction (synchronous=FULL: fsynced at commit). Use it for
// anything that assigns UIDs or UIDVALIDITY, which must never be handed out twice.
func (u *User) tx(ctx context.Context, fn func(cachedQ) error) error {
	return u.runTx(ctx, u.db, &u.stmts, fn)
}

// lazyTx runs fn in a transaction that is not fsynced at commit (synchronous=NORMAL; the
// next durable commit or checkpoint flushes it). It is for flag changes and expunges: a
// power loss may undo the last of them, never corrupt the index or reuse a UID, and an
// undone expunge finds its file gone (removed first) and is redone by Sync. This saves an
// fsync per STORE and EXPUNGE, as Dovecot's mail_fsync=optimized does. The connections
// of u.lazy are opened with synchronous=NORMAL, so no PRAGMA is switched per transaction.
func (u *User) lazyTx(ctx context.Context, fn func(cachedQ) error) error {
	return u.runTx(ctx, u.lazy, &u.lazyStmts, fn)
}

func (u *User) runTx(ctx context.Context, db *sql.DB, c *stmtCache, fn func(cachedQ) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin %s: %w", u.name, err)
	}
	if err := fn(cachedQ{c: c, tx: tx}); err != nil {
		tx.Rollback()
		return fmt.Errorf("store: %s: %w", u.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit %s: %w", u.name, err)
	}
	return nil
}

// Delete removes a folder and its messages. INBOX cannot be deleted; children remain.
func (u *User) Delete(ctx context.Context, name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	mb, err := u.mailboxLocked(ctx, name)
	if err != nil {
		return err
	}
	if mb.Name == Inbox {
		return fmt.Errorf("%w: INBOX cannot be deleted", ErrBadName)
	}
	u.forgetIDs()
	// Remove the directory first: a crash leaves an index row without a folder, which
	// discover removes, rather than a folder the index forgot.
	if err := os.RemoveAll(string(u.folder(mb.Name))); err != nil {
		return fmt.Errorf("store: delete %q: %w", name, err)
	}
	if err := u.tx(ctx, func(q cachedQ) error {
		_, err := q.ExecContext(ctx, `DELETE FROM mailbox WHERE id = ?`, mb.ID)
		return err
	}); err != nil {
		return err
	}
	u.publish(mb.ID, Event{Kind: MailboxDeleted})
	return nil
}

// Rename renames a folder and its children. Renaming INBOX is refused.
func (u *User) Rename(ctx context.Context, oldName, newName string) error {
	to, err := CanonicalMailbox(newName)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	mb, err := u.mailboxLocked(ctx, oldName)
	if err != nil {
		return err
	}
	if mb.Name == Inbox || to == Inbox || strings.HasPrefix(to, Inbox+string(Delimiter)) && mb.Name == Inbox {
		return fmt.Errorf("%w: renaming INBOX is not supported", ErrBadName)
	}
	if _, err := u.mailboxLocked(ctx, to); err == nil {
		return fmt.Errorf("%w: %q", ErrMailboxExists, to)
	}
	all, err := u.Mailboxes(ctx)
	if err != nil {
		return err
	}
	u.forgetIDs()
	var moved []Mailbox
	for _, x := range all {
		if x.Name == mb.Name || strings.HasPrefix(x.Name, mb.Name+string(Delimiter)) {
			moved = append(moved, x)
		}
	}
	for _, x := range moved {
		nn := to + strings.TrimPrefix(x.Name, mb.Name)
		if err := os.Rename(string(u.folder(x.Name)), string(u.folder(nn))); err != nil {
			return fmt.Errorf("store: rename %q to %q: %w", x.Name, nn, err)
		}
	}
	err = u.tx(ctx, func(q cachedQ) error {
		for _, x := range moved {
			nn := to + strings.TrimPrefix(x.Name, mb.Name)
			if _, err := q.ExecContext(ctx, `UPDATE mailbox SET name = ? WHERE id = ?`, nn, x.ID); err != nil {
				return err
			}
			// The subscription follows the folder, as Dovecot's does.
			if _, err := q.ExecContext(ctx, `UPDATE OR REPLACE subscription SET name = ? WHERE name = ?`, nn, x.Name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, x := range moved {
		u.publish(x.ID, Event{Kind: MailboxDeleted})
	}
	return nil
}

// SetSubscribed adds a name to the subscription list or removes it. The list is the
// user's, not the folders': a name may be subscribed whether or not its folder exists,
// and deleting a folder keeps its subscription (RFC 3501 §6.3.6, RFC 9051 §6.3.7).
func (u *User) SetSubscribed(ctx context.Context, name string, on bool) error {
	cn, err := CanonicalMailbox(name)
	if err != nil {
		return err
	}
	if on {
		err = u.addSubscription(ctx, cn)
	} else {
		_, err = u.q(nil).ExecContext(ctx, `DELETE FROM subscription WHERE name = ?`, cn)
	}
	if err != nil {
		return fmt.Errorf("store: subscribe %q: %w", name, err)
	}
	return nil
}

func (u *User) addSubscription(ctx context.Context, cn string) error {
	_, err := u.q(nil).ExecContext(ctx, `INSERT OR IGNORE INTO subscription(name) VALUES(?)`, cn)
	return err
}

// Subscriptions returns the subscribed names, sorted, including those of folders that
// do not exist.
func (u *User) Subscriptions(ctx context.Context) ([]string, error) {
	rows, err := u.q(nil).QueryContext(ctx, `SELECT name FROM subscription ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: subscriptions of %s: %w", u.name, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("store: subscriptions of %s: %w", u.name, err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

const messageCols = `uid, key, file, flags, modseq, internal_date, size, crlf_size, envelope, internal_zone`

// messageColsLite leaves the envelope out: most readers do not want it, and copying the
// blob out of SQLite for every row was a good part of reading the index.
const messageColsLite = `uid, key, file, flags, modseq, internal_date, size, crlf_size, NULL, internal_zone`

func scanMessage(sc interface{ Scan(...any) error }) (Message, error) {
	var m Message
	var flags string
	var date int64
	var zone sql.NullInt64
	err := sc.Scan(&m.UID, &m.Key, &m.File, &flags, &m.ModSeq, &date, &m.Size, &m.SizeCRLF, &m.Envelope, &zone)
	if m.SizeCRLF < 0 {
		m.SizeCRLF = m.Size
	}
	m.Flags = splitFlags(flags)
	m.InternalDate = internalDate(date, zone) // store/zone.go
	return m, err
}

// Messages returns the folder's record and its messages in UID order, after bringing the
// index up to date with the maildir (changes by other programs).
func (u *User) Messages(ctx context.Context, name string) (Mailbox, []Message, error) {
	if err := u.Sync(ctx, name); err != nil {
		return Mailbox{}, nil, err
	}
	mb, err := u.mailboxLocked(ctx, name)
	if err != nil {
		return Mailbox{}, nil, err
	}
	msgs, err := u.messages(ctx, u.q(nil), true, mb.ID, "")
	return mb, msgs, err
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// messages reads index rows of a mailbox; lite leaves Envelope nil.
func (u *User) messages(ctx context.Context, q querier, lite bool, mbID int64, where string, args ...any) ([]Message, error) {
	cols := messageCols
	if lite {
		cols = messageColsLite
	}
	rows, err := q.QueryContext(ctx, `SELECT `+cols+` FROM message WHERE mailbox_id = ? `+where+` ORDER BY uid`, append([]any{mbID}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("store: messages of %s: %w", u.name, err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("store: messages of %s: %w", u.name, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// MessagesByUID returns the messages of mb among uids (missing ones are skipped), in UID
// order. Dense sets (the usual FETCH 1:* or a page of a folder) are read with one range
// query and filtered here, which costs SQLite far less than a long IN list.
func (u *User) MessagesByUID(ctx context.Context, mb Mailbox, uids []uint32) ([]Message, error) {
	return u.messagesByUID(ctx, mb, uids, false)
}

// MessagesByUIDWithoutEnvelope is MessagesByUID with Envelope left nil, which is cheaper:
// for SEARCH, STORE and anything else that does not send envelopes.
func (u *User) MessagesByUIDWithoutEnvelope(ctx context.Context, mb Mailbox, uids []uint32) ([]Message, error) {
	return u.messagesByUID(ctx, mb, uids, true)
}

func (u *User) messagesByUID(ctx context.Context, mb Mailbox, uids []uint32, lite bool) ([]Message, error) {
	return u.messagesByUIDIn(ctx, u.q(nil), mb, uids, lite)
}

// messagesByUIDIn is messagesByUID through q (in a transaction when q has one).
func (u *User) messagesByUIDIn(ctx context.Context, q cachedQ, mb Mailbox, uids []uint32, lite bool) ([]Message, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	lo, hi := uids[0], uids[0]
	want := make(map[uint32]bool, len(uids))
	for _, x := range uids {
		lo, hi = min(lo, x), max(hi, x)
		want[x] = true
	}
	var out []Message
	if int64(hi)-int64(lo) < 4*int64(len(uids))+64 {
		ms, err := u.messages(ctx, q, lite, mb.ID, "AND uid BETWEEN ? AND ?", lo, hi)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if want[m.UID] {
				out = append(out, m)
			}
		}
		return out, nil
	}
	for _, chunk := range chunks(uids, maxInList) {
		in, args := inList(chunk)
		ms, err := u.messages(ctx, q, lite, mb.ID, "AND uid IN ("+in+")", args[1:]...)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}

// Status returns counts for a folder.
func (u *User) Status(ctx context.Context, name string) (Status, error) {
	if err := u.Sync(ctx, name); err != nil {
		return Status{}, err
	}
	mb, err := u.mailboxLocked(ctx, name)
	if err != nil {
		return Status{}, err
	}
	st := Status{Mailbox: mb}
	err = u.q(nil).QueryRowContext(ctx, `SELECT count(*), COALESCE(SUM(size),0),
		COALESCE(SUM(' '||flags||' ' NOT LIKE '% \Seen %'),0),
		COALESCE(SUM(' '||flags||' ' LIKE '% \Deleted %'),0) FROM message WHERE mailbox_id = ?`, mb.ID).
		Scan(&st.Messages, &st.Size, &st.Unseen, &st.Deleted)
	if err != nil {
		return Status{}, fmt.Errorf("store: status %q: %w", name, err)
	}
	return st, nil
}

// Usage returns the bytes used by all the user's messages.
func (u *User) Usage(ctx context.Context) (int64, error) {
	var n int64
	if err := u.q(nil).QueryRowContext(ctx, `SELECT COALESCE(SUM(size),0) FROM message`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: usage of %s: %w", u.name, err)
	}
	return n, nil
}

// Open opens a message's file. The file may have been renamed by a flag change since the
// record was read; Open then finds it by key.
func (u *User) Open(mb Mailbox, m Message) (*os.File, error) {
	d := u.folder(mb.Name)
	f, err := os.Open(filepath.Join(string(d), m.File))
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: open message %d in %q: %w", m.UID, mb.Name, err)
	}
	e, ferr := d.Find(m.Key)
	if ferr != nil {
		return nil, fmt.Errorf("%w: uid %d in %q: %w", ErrNoMessage, m.UID, mb.Name, ferr)
	}
	return d.Open(e)
}

// AppendResult identifies a stored message (RFC 4315 APPENDUID).
type AppendResult struct {
	UIDValidity uint32
	UID         uint32
}

// countingReader counts bytes and bare LFs (not preceded by CR) as they stream by.
type countingReader struct {
	r      io.Reader
	n      int64
	bareLF int64
	prevCR bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	for _, b := range p[:n] {
		if b == '\n' && !c.prevCR {
			c.bareLF++
		}
		c.prevCR = b == '\r'
	}
	return n, err
}

// crlfSize reads a file to compute its size with bare LFs counted as CRLF.
func crlfSize(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	cr := &countingReader{r: f}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return -1
	}
	return cr.n + cr.bareLF
}

// FlagOp is how SetFlags combines flags (RFC 3501 §6.4.6 FLAGS, +FLAGS, -FLAGS).
type FlagOp int

// Flag operations.
const (
	FlagsReplace FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// SetFlags changes the flags of the messages with the given UIDs and returns the messages
// whose flags changed. source is passed on in the FlagsChanged event.
func (u *User) SetFlags(ctx context.Context, mb Mailbox, uids []uint32, op FlagOp, flags []string, source any) ([]Message, error) {
	changed, _, err := u.setFlags(ctx, mb, uids, op, flags, nil, source)
	return changed, err
}

// SetFlagsUnchangedSince is SetFlags for a conditional STORE (RFC 7162 §3.1.3,
// UNCHANGEDSINCE): the messages whose modseq is above unchangedSince are left alone and
// returned, ascending, in modified. The test and the change are one write transaction
// (BEGIN IMMEDIATE), so a change by another session or process cannot come between them:
// of two sessions storing with the same UNCHANGEDSINCE, one wins and the other is told
// MODIFIED.
func (u *User) SetFlagsUnchangedSince(ctx context.Context, mb Mailbox, uids []uint32, op FlagOp, flags []string, unchangedSince uint64, source any) (changed []Message, modified []uint32, err error) {
	return u.setFlags(ctx, mb, uids, op, flags, &unchangedSince, source)
}

func (u *User) setFlags(ctx context.Context, mb Mailbox, uids []uint32, op FlagOp, flags []string, unchangedSince *uint64, source any) (changed []Message, modified []uint32, err error) {
	flags = NormalizeFlags(flags)
	u.mu.Lock()
	defer u.mu.Unlock()
	d := u.folder(mb.Name)
	if unchangedSince == nil {
		// An unconditional STORE that changes nothing (\Seen on a seen message, the
		// common case) is answered from one read, without taking the write lock.
		msgs, err := u.messagesByUID(ctx, mb, uids, true)
		if err != nil {
			return nil, nil, err
		}
		if !slices.ContainsFunc(msgs, func(m Message) bool { return joinFlags(applyFlags(m.Flags, op, flags)) != joinFlags(m.Flags) }) {
			return nil, nil, nil
		}
	}
	var ferr error
	// Files are renamed first (maildir flags), then the index follows; a failed rename
	// stops there, and what changed so far is still recorded. The rows are read again in
	// the write transaction: what they hold then is what the change and the
	// UNCHANGEDSINCE test apply to.
	err = u.lazyTx(ctx, func(q cachedQ) error {
		changed, modified, ferr = nil, nil, nil
		msgs, err := u.messagesByUIDIn(ctx, q, mb, uids, true)
		if err != nil {
			return err
		}
		before := noStamp
		for _, m := range msgs {
			if unchangedSince != nil && m.ModSeq > *unchangedSince {
				modified = append(modified, m.UID)
				continue
			}
			nf := applyFlags(m.Flags, op, flags)
			if joinFlags(nf) == joinFlags(m.Flags) {
				continue // nothing to do: no modseq, no write
			}
			oldMF, newMF := maildirFlags(m.Flags), maildirFlags(nf)
			if oldMF != newMF || strings.HasPrefix(m.File, maildir.New+"/") {
				if before == noStamp {
					if before = dirStamp(d); before == "" {
						before = noStamp
					}
				}
				e, err := u.entry(d, m)
				if err == nil {
					var ne maildir.Entry
					ne, err = d.SetFlags(e, newMF)
					m.File = ne.Sub + "/" + ne.File()
				}
				if err != nil {
					ferr = err
					break
				}
			}
			m.Flags = nf
			changed = append(changed, m)
		}
		if len(changed) == 0 {
			return errNoChange
		}
		after := ""
		if before != noStamp {
			after = dirStamp(d)
		}
		// One statement takes the modseqs and keeps the folder's stamp (see commitAppends).
		var last uint64
		if err := q.QueryRowContext(ctx, `UPDATE mailbox SET modseq = modseq + ?, dir_mtime = CASE WHEN dir_mtime = ? AND ? <> '' THEN ? ELSE dir_mtime END WHERE id = ? RETURNING modseq`,
			len(changed), before, after, after, mb.ID).Scan(&last); err != nil {
			return err
		}
		modseq := last - uint64(len(changed))
		for i := range changed {
			modseq++
			changed[i].ModSeq = modseq
			if _, err := q.ExecContext(ctx, `UPDATE message SET flags = ?, file = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?`,
				joinFlags(changed[i].Flags), changed[i].File, modseq, mb.ID, changed[i].UID); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil, modified, ferr
	}
	if err != nil {
		return nil, nil, errors.Join(err, ferr)
	}
	u.publish(mb.ID, Event{Kind: FlagsChanged, Messages: changed, Source: source})
	return changed, modified, ferr
}

// errNoChange rolls back a transaction that found nothing to write.
var errNoChange = errors.New("nothing to change")

// noStamp never equals a stored directory stamp ("" does: a folder never synced).
const noStamp = "-"

// entry finds the maildir entry of an indexed message, tolerating renames by others.
func (u *User) entry(d maildir.Dir, m Message) (maildir.Entry, error) {
	sub, name, _ := strings.Cut(m.File, "/")
	if n, err := maildir.ParseName(name); err == nil {
		if _, err := os.Lstat(filepath.Join(string(d), m.File)); err == nil {
			return maildir.Entry{Sub: sub, Name: n}, nil
		}
	}
	return d.Find(m.Key)
}

func applyFlags(cur []string, op FlagOp, flags []string) []string {
	switch op {
	case FlagsReplace:
		return NormalizeFlags(flags)
	case FlagsAdd:
		return NormalizeFlags(append(append([]string{}, cur...), flags...))
	default:
		var out []string
		for _, f := range cur {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
		return NormalizeFlags(out)
	}
}

// Expunge removes the messages flagged \Deleted (only those among uids when uids is not
// nil) and returns their UIDs.
func (u *User) Expunge(ctx context.Context, mb Mailbox, uids []uint32) ([]uint32, error) {
	return u.remove(ctx, mb, func(q cachedQ) ([]Message, error) {
		var msgs []Message
		var err error
		if uids == nil {
			msgs, err = u.messages(ctx, q, true, mb.ID, `AND ' '||flags||' ' LIKE '% \Deleted %'`)
		} else {
			msgs, err = u.messagesByUIDIn(ctx, q, mb, uids, true)
		}
		var del []Message
		for _, m := range msgs {
			if hasFlag(m.Flags, FlagDeleted) {
				del = append(del, m)
			}
		}
		return del, err
	})
}

// Remove removes the given messages whatever their flags (POP3 DELE at QUIT).
func (u *User) Remove(ctx context.Context, mb Mailbox, uids []uint32) ([]uint32, error) {
	return u.remove(ctx, mb, func(q cachedQ) ([]Message, error) {
		return u.messagesByUIDIn(ctx, q, mb, uids, true)
	})
}

// remove deletes the messages pick chooses, reading and writing in one transaction.
func (u *User) remove(ctx context.Context, mb Mailbox, pick func(cachedQ) ([]Message, error)) ([]uint32, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var uids []uint32
	err := u.lazyTx(ctx, func(q cachedQ) error {
		msgs, err := pick(q)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return errNoChange
		}
		d := u.folder(mb.Name)
		before := dirStamp(d)
		if before == "" {
			before = noStamp
		}
		// Files go first: a crash in between leaves index rows without files, which Sync
		// expunges, instead of expunged messages coming back.
		for _, m := range msgs {
			if e, err := u.entry(d, m); err == nil {
				if err := d.Remove(e); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		}
		after := dirStamp(d)
		uids = make([]uint32, len(msgs))
		for i, m := range msgs {
			uids[i] = m.UID
		}
		if err := u.deleteUIDs(ctx, q, mb.ID, uids); err != nil {
			return err
		}
		_, err = q.ExecContext(ctx, `UPDATE mailbox SET modseq = modseq + 1, dir_mtime = CASE WHEN dir_mtime = ? AND ? <> '' THEN ? ELSE dir_mtime END WHERE id = ?`,
			before, after, after, mb.ID)
		return err
	})
	if errors.Is(err, errNoChange) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	u.publish(mb.ID, Event{Kind: Expunged, UIDs: uids})
	return uids, nil
}

// CopyResult maps source UIDs to destination UIDs (RFC 4315 COPYUID).
type CopyResult struct {
	UIDValidity uint32
	SrcUIDs     []uint32
	DstUIDs     []uint32
}

// Copy copies messages into another folder (hard links where possible).
func (u *User) Copy(ctx context.Context, src Mailbox, uids []uint32, dstName string) (CopyResult, error) {
	return u.transfer(ctx, src, uids, dstName, false)
}

// Move moves messages into another folder: the files are renamed, the destination gets new
// UIDs and the source expunges them (RFC 6851).
func (u *User) Move(ctx context.Context, src Mailbox, uids []uint32, dstName string) (CopyResult, error) {
	return u.transfer(ctx, src, uids, dstName, true)
}

func (u *User) transfer(ctx context.Context, src Mailbox, uids []uint32, dstName string, move bool) (CopyResult, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	dst, err := u.mailboxLocked(ctx, dstName)
	if err != nil {
		return CopyResult{}, err
	}
	if move && dst.ID == src.ID {
		return CopyResult{}, fmt.Errorf("store: move into the same mailbox %q", dst.Name)
	}
	msgs, err := u.MessagesByUID(ctx, src, uids)
	if err != nil {
		return CopyResult{}, err
	}
	if q := int64(u.store.cfg.Quota); q > 0 && !move {
		used, err := u.Usage(ctx)
		if err != nil {
			return CopyResult{}, err
		}
		var add int64
		for _, m := range msgs {
			add += m.Size
		}
		if used+add > q {
			return CopyResult{}, fmt.Errorf("%w: %s uses %d of %d bytes", ErrOverQuota, u.name, used, q)
		}
	}
	sd, dd := u.folder(src.Name), u.folder(dst.Name)
	type placed struct {
		m    Message
		key  string
		file string
	}
	var done []placed
	undo := func() {
		for _, p := range done {
			if move {
				os.Rename(filepath.Join(string(dd), p.file), filepath.Join(string(sd), p.m.File))
			} else {
				os.Remove(filepath.Join(string(dd), p.file))
			}
		}
	}
	for _, m := range msgs {
		e, err := u.entry(sd, m)
		if err != nil {
			undo()
			return CopyResult{}, err
		}
		from := sd.Path(e.Sub, e.File())
		key, name := m.Key, e.File()
		if !move {
			// A copy needs its own key: the same name in two folders would confuse readers
			// that track keys across folders.
			key = maildir.NewKey()
			if e.Name.Size >= 0 {
				key += fmt.Sprintf(",S=%d", e.Name.Size)
			}
			name = key
			if e.Sub == maildir.Cur {
				name = maildir.FormatName(key, e.Name.Flags)
			}
		}
		to := dd.Path(e.Sub, name)
		if move {
			err = os.Rename(from, to)
		} else {
			err = linkOrCopy(from, to)
		}
		if err != nil {
			undo()
			return CopyResult{}, fmt.Errorf("store: transfer %s to %q: %w", from, dst.Name, err)
		}
		m.File = e.Sub + "/" + e.File()
		done = append(done, placed{m: m, key: key, file: e.Sub + "/" + name})
	}
	res := CopyResult{UIDValidity: dst.UIDValidity}
	err = u.tx(ctx, func(q cachedQ) error {
		d, err := scanMailbox(q.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailbox WHERE id = ?`, dst.ID))
		if err != nil {
			return err
		}
		uid, modseq := d.UIDNext, d.ModSeq
		for _, p := range done {
			modseq++
			// The copy keeps the internal date with its zone, or without one (RFC 3501 §6.4.7).
			if _, err := q.ExecContext(ctx, `INSERT INTO message(mailbox_id, uid, key, file, flags, modseq, internal_date, size, crlf_size, envelope, internal_zone)
				VALUES(?,?,?,?,?,?,?,?,?,?,(SELECT internal_zone FROM message WHERE mailbox_id = ? AND uid = ?))`,
				dst.ID, uid, p.key, p.file, joinFlags(p.m.Flags), modseq, p.m.InternalDate.UnixNano(), p.m.Size, p.m.SizeCRLF, p.m.Envelope, src.ID, p.m.UID); err != nil {
				return err
			}
			res.SrcUIDs = append(res.SrcUIDs, p.m.UID)
			res.DstUIDs = append(res.DstUIDs, uid)
			uid++
		}
		if _, err := q.ExecContext(ctx, `UPDATE mailbox SET uidnext = ?, modseq = ? WHERE id = ?`, uid, modseq, dst.ID); err != nil {
			return err
		}
		if move {
			if err := u.deleteUIDs(ctx, q, src.ID, res.SrcUIDs); err != nil {
				return err
			}
			if _, err := q.ExecContext(ctx, `UPDATE mailbox SET modseq = modseq + 1 WHERE id = ?`, src.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		undo()
		return CopyResult{}, err
	}
	if len(res.DstUIDs) > 0 {
		u.publish(dst.ID, Event{Kind: Appended, UIDs: res.DstUIDs})
		if move {
			u.publish(src.ID, Event{Kind: Expunged, UIDs: res.SrcUIDs})
		}
	}
	return res, nil
}

func linkOrCopy(from, to string) error {
	if err := os.Link(from, to); err == nil {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(to)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(to)
		return err
	}
	return out.Close()
}

// CacheEnvelope stores an envelope blob (opaque to the store) for a message.
func (u *User) CacheEnvelope(ctx context.Context, mb Mailbox, uid uint32, b []byte) error {
	// A cache: written without fsync (a power loss may lose it, it is computed again).
	_, err := cachedQ{c: &u.lazyStmts}.ExecContext(ctx, `UPDATE message SET envelope = ? WHERE mailbox_id = ? AND uid = ?`, b, mb.ID, uid)
	if err != nil {
		return fmt.Errorf("store: cache envelope: %w", err)
	}
	return nil
}

func chunks(u []uint32, n int) [][]uint32 {
	var out [][]uint32
	for len(u) > n {
		out = append(out, u[:n])
		u = u[n:]
	}
	if len(u) > 0 {
		out = append(out, u)
	}
	return out
}

// maxInList is the most UIDs one IN list holds.
const maxInList = 512

// inList returns the placeholders and arguments of an IN list for uids (at most
// maxInList). The list is padded to a power of two by repeating the last UID, so that a
// handful of statement texts cover every size and stay in the prepared statement cache:
// parsing a fresh 31-item IN list on every SEARCH cost more than running it.
func inList(uids []uint32) (string, []any) {
	n := 1
	for n < len(uids) {
		n *= 2
	}
	args := make([]any, n+1)
	for i := range n {
		args[i+1] = uids[min(i, len(uids)-1)]
	}
	return strings.TrimSuffix(strings.Repeat("?,", n), ","), args
}

// deleteUIDs removes the index rows of uids in mailbox mbID (leaving tombstones, which
// it prunes when due).
func (u *User) deleteUIDs(ctx context.Context, q cachedQ, mbID int64, uids []uint32) error {
	for _, c := range chunks(uids, maxInList) {
		in, args := inList(c)
		args[0] = mbID
		if _, err := q.ExecContext(ctx, `DELETE FROM message WHERE mailbox_id = ? AND uid IN (`+in+`)`, args...); err != nil {
			return err
		}
	}
	return u.pruneTombstones(ctx, q, mbID, len(uids))
}
