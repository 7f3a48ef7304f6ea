package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/portcullis-mail/portcullis/store/maildir"
)

// appendReq is one Append whose file is on disk (fsynced, directory included) and whose
// index row is waiting for a commit.
type appendReq struct {
	mbID       int64
	d          maildir.Dir
	before     string // the folder's new/cur stamp before the file was added
	key, file  string
	path       string
	flags      []string
	date       time.Time
	size, crlf int64
	res        AppendResult
	err        error
	already    bool   // a concurrent Sync indexed the file first
	wantUID    uint32 // the UID is at least this (a migration keeping the source's UIDs)
	done       bool   // guarded by User.mu
}

// Append stores a message in a folder with flags and an internal date (zero: now). When it
// returns without error the file, its directory entry and its index row are on disk.
//
// Group commit: the file is written and fsynced outside the user's lock; its index row is
// then queued, and whoever takes the lock next commits every queued row of the user in one
// durable transaction (one WAL fsync), as databases do. Each caller still returns only
// after the commit holding its own row. Deliveries to one busy mailbox (LMTP, the queue)
// and parallel APPENDs of one user share fsyncs instead of queueing for one each.
func (u *User) Append(ctx context.Context, name string, r io.Reader, flags []string, date time.Time) (AppendResult, error) {
	req, err := u.prepareAppend(ctx, name, r, flags, date)
	if err != nil {
		return AppendResult{}, err
	}
	u.amu.Lock()
	u.appendQ = append(u.appendQ, req)
	u.amu.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	if !req.done {
		u.amu.Lock()
		batch := u.appendQ
		u.appendQ = nil
		u.amu.Unlock()
		u.commitAppends(batch)
	}
	if req.err != nil {
		return AppendResult{}, fmt.Errorf("store: append to %q: %w", name, req.err)
	}
	return req.res, nil
}

// pendingAppends returns the keys of the files written into mailbox mbID by appends
// still waiting for their index commit: each is announced before its file appears in the
// folder (maildir.DeliverAnnounced) and forgotten once committed or failed.
func (u *User) pendingAppends(mbID int64) map[string]bool {
	u.amu.Lock()
	defer u.amu.Unlock()
	keys := map[string]bool{}
	for k, id := range u.appending {
		if id == mbID {
			keys[k] = true
		}
	}
	return keys
}

// setAppending records (mbID ≠ 0) or forgets (0) that the file key is an APPEND's
// waiting for its commit.
func (u *User) setAppending(key string, mbID int64) {
	u.amu.Lock()
	defer u.amu.Unlock()
	if mbID == 0 {
		delete(u.appending, key)
		return
	}
	if u.appending == nil {
		u.appending = map[string]int64{}
	}
	u.appending[key] = mbID
}

// prepareAppend writes a message's file (fsynced, directory included) and returns the
// request whose index row is still to be committed.
func (u *User) prepareAppend(ctx context.Context, name string, r io.Reader, flags []string, date time.Time) (*appendReq, error) {
	mbID, mbName, err := u.mailboxID(ctx, name)
	if err != nil {
		return nil, err
	}
	flags = NormalizeFlags(flags)
	// The date (the client's, or now) is also the file's mtime, set before the file
	// appears in the folder: readers that index from the maildir (a rebuild, Dovecot) take
	// the received date from it, and must find the one the index holds.
	if date.IsZero() {
		date = time.Now()
	}
	max := int64(u.store.cfg.MaxMessageSize)
	cr := &countingReader{r: io.LimitReader(r, max+1)}
	d := u.folder(mbName)
	sub, mf := maildir.New, maildir.Flags("")
	if mf = maildirFlags(flags); mf != "" {
		sub = maildir.Cur
	}
	before := dirStamp(d)
	announced := ""
	key, err := d.DeliverAnnounced(cr, sub, mf, date, func(key string) {
		announced = key
		u.setAppending(key, mbID)
	})
	if err != nil {
		if announced != "" {
			u.setAppending(announced, 0)
		}
		return nil, fmt.Errorf("store: append to %q of %s: %w", name, u.name, err)
	}
	file := sub + "/" + key
	if sub == maildir.Cur {
		file = sub + "/" + maildir.FormatName(key, mf)
	}
	path := filepath.Join(string(d), file)
	if cr.n > max {
		os.Remove(path)
		u.setAppending(key, 0)
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooBig, max)
	}
	return &appendReq{mbID: mbID, d: d, before: before, key: key, file: file, path: path,
		flags: flags, date: date, size: cr.n, crlf: cr.n + cr.bareLF}, nil
}

// mailboxState is a folder's counters while a batch of appends is indexed.
type mailboxState struct {
	uidValidity uint32
	uidNext     uint32
	modSeq      uint64
	stamp       string // dir_mtime as stored
	d           maildir.Dir
	synced      bool     // the stored stamp was current before one of the batch's files
	added       []uint32 // UIDs assigned, ascending
}

// commitAppends indexes a batch of appends in one durable transaction; called with u.mu
// held. Every request gets its result or error and is marked done; the files of requests
// that fail are removed.
func (u *User) commitAppends(batch []*appendReq) {
	// The batch carries other callers' messages: one caller's cancelled context must not
	// fail them.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer func() {
		for _, r := range batch {
			if r.err != nil && !r.already {
				os.Remove(r.path)
			}
			u.setAppending(r.key, 0)
			r.done = true
		}
	}()
	var todo []*appendReq
	if q := int64(u.store.cfg.Quota); q > 0 {
		used, err := u.Usage(ctx)
		if err != nil {
			for _, r := range batch {
				r.err = err
			}
			return
		}
		for _, r := range batch {
			if used+r.size > q {
				r.err = fmt.Errorf("%w: %s uses %d of %d bytes, message has %d", ErrOverQuota, u.name, used, q, r.size)
				continue
			}
			used += r.size
			todo = append(todo, r)
		}
	} else {
		todo = batch
	}
	if len(todo) == 0 {
		return
	}
	var order []int64
	states := map[int64]*mailboxState{}
	err := u.tx(ctx, func(q cachedQ) error {
		clear(states)
		order = order[:0]
		for _, r := range todo {
			r.res, r.err, r.already = AppendResult{}, nil, false
			st, ok := states[r.mbID]
			if !ok {
				st = &mailboxState{d: r.d}
				err := q.QueryRowContext(ctx, `SELECT uidvalidity, uidnext, modseq, dir_mtime FROM mailbox WHERE id = ?`, r.mbID).
					Scan(&st.uidValidity, &st.uidNext, &st.modSeq, &st.stamp)
				if errors.Is(err, sql.ErrNoRows) {
					st = nil // deleted since Append looked it up
					u.forgetIDs()
				} else if err != nil {
					return err
				}
				states[r.mbID] = st
				if st != nil {
					order = append(order, r.mbID)
				}
			}
			if st == nil {
				r.err = ErrNoMailbox
				continue
			}
			if r.wantUID > st.uidNext {
				st.uidNext = r.wantUID // RFC 3501 §2.3.1.1: UIDs ascend, gaps are allowed
			}
			res, err := q.ExecContext(ctx, `INSERT INTO message(mailbox_id, uid, key, file, flags, modseq, internal_date, internal_zone, size, crlf_size) VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(mailbox_id, key) DO NOTHING`,
				r.mbID, st.uidNext, r.key, r.file, joinFlags(r.flags), st.modSeq+1, r.date.UnixNano(), zoneOffset(r.date), r.size, r.crlf)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				// A concurrent Sync indexed the file between its write and this commit.
				var have uint32
				if err := q.QueryRowContext(ctx, `SELECT uid FROM message WHERE mailbox_id = ? AND key = ?`, r.mbID, r.key).Scan(&have); err != nil {
					return err
				}
				if _, err := q.ExecContext(ctx, `UPDATE message SET flags = ?, internal_date = ?, internal_zone = ? WHERE mailbox_id = ? AND uid = ?`,
					joinFlags(r.flags), r.date.UnixNano(), zoneOffset(r.date), r.mbID, have); err != nil {
					return err
				}
				r.res, r.already = AppendResult{UIDValidity: st.uidValidity, UID: have}, true
				continue
			}
			r.res = AppendResult{UIDValidity: st.uidValidity, UID: st.uidNext}
			st.added = append(st.added, st.uidNext)
			st.uidNext++
			st.modSeq++
			if r.before != "" && r.before == st.stamp {
				st.synced = true
			}
		}
		for _, id := range order {
			st := states[id]
			if len(st.added) == 0 {
				continue
			}
			// keepStamp: when the index was in sync with the folder just before our own
			// files arrived, record the new stamp so the next SELECT does not rescan the
			// directory. Files other programs dropped in the same instant are caught by the
			// periodic full scan (Config.FullScanInterval).
			stamp := st.stamp
			if st.synced {
				stamp = dirStamp(st.d)
			}
			if _, err := q.ExecContext(ctx, `UPDATE mailbox SET uidnext = ?, modseq = ?, dir_mtime = ? WHERE id = ?`,
				st.uidNext, st.modSeq, stamp, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, r := range todo {
			if r.err == nil {
				r.err = err
			}
		}
		return
	}
	for _, id := range order {
		if st := states[id]; len(st.added) > 0 {
			u.publish(id, Event{Kind: Appended, UIDs: st.added})
		}
	}
}
