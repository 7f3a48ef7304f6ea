package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// RcptState is the delivery state of one recipient.
type RcptState string

// Recipient states. Delivered and Failed are final; a message can be removed once every
// recipient is in a final state.
const (
	Pending   RcptState = ""          // no attempt recorded yet
	Deferred  RcptState = "deferred"  // temporary failure, to be retried
	Delivered RcptState = "delivered" // final: accepted by the destination
	Failed    RcptState = "failed"    // final: permanent failure or expiry (bounced unless the sender is null)
)

// Final reports whether the state ends the recipient's delivery.
func (s RcptState) Final() bool { return s == Delivered || s == Failed }

// Op is the kind of a status record.
type Op string

// Status record kinds.
const (
	OpRcpt    Op = "rcpt"    // a recipient's result: Rcpt, State, Reply, DSN
	OpDefer   Op = "defer"   // an attempt ended with recipients left: Next, Reply; counts an attempt
	OpHold    Op = "hold"    // put on hold: no delivery until released
	OpRelease Op = "release" // released from hold, due now
	OpFlush   Op = "flush"   // due now (postqueue -f / -i)
	OpWarned  Op = "warned"  // a delay warning was sent to the sender
	OpDelete  Op = "delete"  // deleted by the administrator while the owner ran: the owner removes it
)

// Record is one line of a message's status file.
type Record struct {
	Time  time.Time `json:"t"`
	Op    Op        `json:"op"`
	Rcpt  string    `json:"rcpt,omitempty"`
	State RcptState `json:"state,omitempty"`
	Reply string    `json:"reply,omitempty"` // the destination's reply or the error, for logs and DSNs
	Next  time.Time `json:"next,omitzero"`   // OpDefer: the next attempt
	// DSN is set on a Failed recipient whose bounce has been queued (or that needs none), so
	// a restart does not bounce twice.
	DSN bool `json:"dsn,omitempty"`
}

// RcptStatus is the current state of one recipient, folded from its records.
type RcptStatus struct {
	State    RcptState
	Reply    string
	Time     time.Time
	DSN      bool
	Attempts int // results recorded for this recipient
}

// Status is the current state of a queued message, folded from its status records.
type Status struct {
	Held        bool
	Released    bool      // released from hold at least once (a quarantined message is not held again)
	NextAttempt time.Time // zero: due now
	Attempts    int       // OpDefer records so far
	LastReply   string
	Warned      bool
	Deleted     bool                  // an administrator asked for removal (OpDelete): remove without delivering
	Rcpts       map[string]RcptStatus // by recipient address as in Envelope.To
}

// Done reports whether every recipient of env has a final state.
func (st Status) Done(env Envelope) bool {
	for _, r := range env.To {
		if !st.Rcpts[r].State.Final() {
			return false
		}
	}
	return true
}

// Remaining returns the recipients of env without a final state, in envelope order.
func (st Status) Remaining(env Envelope) []string {
	var out []string
	for _, r := range env.To {
		if !st.Rcpts[r].State.Final() {
			out = append(out, r)
		}
	}
	return out
}

func (st *Status) apply(r Record) {
	switch r.Op {
	case OpRcpt:
		rs := st.Rcpts[r.Rcpt]
		if rs.State.Final() && !r.State.Final() {
			return // a final state is never undone
		}
		rs.State, rs.Reply, rs.Time = r.State, r.Reply, r.Time
		rs.DSN = rs.DSN || r.DSN
		rs.Attempts++
		st.Rcpts[r.Rcpt] = rs
	case OpDefer:
		st.Attempts++
		st.NextAttempt = r.Next
		st.LastReply = r.Reply
	case OpHold:
		st.Held = true
	case OpRelease:
		st.Held = false
		st.Released = true
		st.NextAttempt = time.Time{}
	case OpFlush:
		st.NextAttempt = time.Time{}
	case OpWarned:
		st.Warned = true
	case OpDelete:
		st.Deleted = true
	}
}

// maxStatusFile bounds what Status reads; a message retried every minute for five days
// writes a few MB at most.
const maxStatusFile = 64 << 20

// Status returns the folded state of a queued message. A message without records yet has
// every recipient Pending.
func (s *Spool) Status(id string) (Status, error) {
	if !ValidID(id) {
		return Status{}, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	st := Status{Rcpts: map[string]RcptStatus{}}
	recs, err := s.Records(id)
	if err != nil {
		return st, err
	}
	for _, r := range recs {
		st.apply(r)
	}
	return st, nil
}

// Records returns the status records of a message in the order they were written. Lines
// that fail their checksum (a write torn by a crash) are skipped.
func (s *Spool) Records(id string) ([]Record, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	f, err := os.Open(s.path("status", id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: status %s: %w", id, err)
	}
	defer f.Close()
	return parseRecords(io.LimitReader(f, maxStatusFile))
}

func parseRecords(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if rec, ok := decodeRecord(sc.Bytes()); ok {
			out = append(out, rec)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("spool: status: %w", err)
	}
	return out, nil
}

// A status line is "CRC32C-HEX JSON": 8 hex digits of the Castagnoli checksum of the JSON.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

func encodeRecord(r Record) ([]byte, error) {
	j, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	line := make([]byte, 0, len(j)+10)
	line = fmt.Appendf(line, "%08x ", crc32.Checksum(j, crcTable))
	line = append(line, j...)
	return append(line, '\n'), nil
}

func decodeRecord(line []byte) (Record, bool) {
	if len(line) < 10 || line[8] != ' ' {
		return Record{}, false
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil || crc32.Checksum(line[9:], crcTable) != uint32(want) {
		return Record{}, false
	}
	var r Record
	if json.Unmarshal(line[9:], &r) != nil {
		return Record{}, false
	}
	return r, true
}

// Append durably adds records to a message's status file: when it returns nil they
// survive a crash. Records without a Time get the current time.
func (s *Spool) Append(id string, recs ...Record) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	if len(recs) == 0 {
		return nil
	}
	if !s.mlog.has(id) {
		if _, err := os.Stat(s.path("queue", id)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			return fmt.Errorf("spool: status %s: %w", id, err)
		}
	} else if !s.mlog.readOnly {
		// A message that waits (deferred, held) leaves the incoming log for a file of its
		// own, so that it does not keep a whole log segment alive.
		for _, r := range recs {
			if r.Op == OpDefer || r.Op == OpHold {
				if err := s.migrate(id); err != nil {
					return err
				}
				break
			}
		}
	}
	var buf bytes.Buffer
	now := time.Now().UTC()
	for _, r := range recs {
		if r.Time.IsZero() {
			r.Time = now
		}
		line, err := encodeRecord(r)
		if err != nil {
			return fmt.Errorf("spool: status %s: %w", id, err)
		}
		buf.Write(line)
	}
	unlock := s.statusMu.lock(id)
	defer unlock()

	path := s.path("status", id)
	created := true
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0o600)
	}
	if err != nil {
		return fmt.Errorf("spool: status %s: %w", id, err)
	}
	defer f.Close()
	if !created {
		// A crash may have torn the last line; start ours on a fresh line so it parses.
		if st, err := f.Stat(); err == nil && st.Size() > 0 {
			var last [1]byte
			if _, err := f.ReadAt(last[:], st.Size()-1); err == nil && last[0] != '\n' {
				if _, err := f.Write([]byte{'\n'}); err != nil {
					return fmt.Errorf("spool: status %s: %w", id, err)
				}
			}
		}
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("spool: status %s: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: status %s: fsync: %w", id, err)
	}
	if created {
		if err := s.status.sync(); err != nil {
			return fmt.Errorf("spool: status %s: fsync directory: %w", id, err)
		}
	}
	if s.lock == nil {
		s.touchKick() // tell the owner's queue manager to look again
	}
	return nil
}

// touchKick updates the mtime of DIR/kick; see Kicked.
func (s *Spool) touchKick() {
	p := filepath.Join(s.dir, "kick")
	now := time.Now()
	if err := os.Chtimes(p, now, now); errors.Is(err, os.ErrNotExist) {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
			f.Close()
		}
	}
}

// Kicked returns the last time a Shared handle (a queue command in another process)
// changed a message, so that the owner's queue manager can rescan promptly: polling
// this is one stat(2).
func (s *Spool) Kicked() time.Time {
	st, err := os.Stat(filepath.Join(s.dir, "kick"))
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// SetRecipient records one recipient's result.
func (s *Spool) SetRecipient(id, rcpt string, state RcptState, reply string) error {
	return s.Append(id, Record{Op: OpRcpt, Rcpt: rcpt, State: state, Reply: reply})
}

// Defer records an attempt that left recipients undelivered and when to try again.
func (s *Spool) Defer(id string, next time.Time, reason string) error {
	return s.Append(id, Record{Op: OpDefer, Next: next.UTC(), Reply: reason})
}

// Hold puts a message on hold: delivery skips it until Release.
func (s *Spool) Hold(id string) error { return s.Append(id, Record{Op: OpHold}) }

// Release takes a message off hold and makes it due now.
func (s *Spool) Release(id string) error { return s.Append(id, Record{Op: OpRelease}) }

// Flush makes a deferred message due now.
func (s *Spool) Flush(id string) error { return s.Append(id, Record{Op: OpFlush}) }

// Remove deletes a message whose recipients all have a final status, and its status file.
// It returns ErrNotFinal otherwise. The queue file goes first and that unlink is made
// durable before the status file goes, so a crash in between leaves a lone status file
// (cleaned at Open), never a queued message that lost its delivery records.
func (s *Spool) Remove(id string) error { return s.Complete(id) }

// Complete removes a message whose delivery ends with recs: every recipient must have a
// final state once recs are applied to the records already written, or it returns
// ErrNotFinal and changes nothing. recs are not written, because the removal itself is the
// durable record of the outcome; a crash before it leaves the message queued with its
// earlier records, to be tried again. This saves two fsyncs on the common path, a message
// delivered at its first attempt.
func (s *Spool) Complete(id string, recs ...Record) error {
	env, err := s.Envelope(id)
	if err != nil {
		return err
	}
	st, err := s.Status(id)
	if err != nil {
		return err
	}
	for _, r := range recs {
		st.apply(r)
	}
	if rem := st.Remaining(env); len(rem) > 0 {
		return fmt.Errorf("%w: %s: %d of %d recipients", ErrNotFinal, id, len(rem), len(env.To))
	}
	return s.remove(id)
}

// Delete removes a message whatever the state of its recipients: the administrator's
// "postsuper -d". Nothing is bounced.
//
// On a Shared spool a message still in the owner's incoming log cannot be touched from
// here: it gets an OpDelete record instead, and the owner's queue manager removes it.
func (s *Spool) Delete(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	if s.mlog.readOnly && s.mlog.has(id) {
		return s.Append(id, Record{Op: OpDelete})
	}
	err := s.remove(id)
	if err == nil && s.lock == nil {
		s.touchKick()
	}
	return err
}

// Park moves a message that is going to wait (held by a queue command from another
// process, say) out of the incoming log into its own file, so that it does not keep a log
// segment alive. Defer and Hold do this themselves; for any other message it does nothing.
func (s *Spool) Park(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	if s.mlog.readOnly || !s.mlog.has(id) {
		return nil
	}
	return s.migrate(id)
}

// migrate moves a message from the incoming log into a file of its own in queue/. A crash
// between the two steps leaves both copies, and Open's recovery keeps the file.
func (s *Spool) migrate(id string) error {
	env, m, ok, err := s.mlog.open(id)
	if !ok {
		return nil // removed meanwhile, or already moved
	}
	if err != nil {
		return fmt.Errorf("spool: move %s out of the log: %w", id, err)
	}
	defer m.Close()
	tmp := s.path("tmp", id)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool: move %s out of the log: %w", id, err)
	}
	ctx := context.Background()
	if err := s.writeFile(ctx, f, &env, id, m); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := s.commitFile(ctx, f, id); err != nil {
		return err
	}
	if _, err := s.mlog.remove(id); err != nil {
		return fmt.Errorf("spool: move %s out of the log: %w", id, err)
	}
	return nil
}

// remove removes the message id, from the log or its own file, then its status file.
func (s *Spool) remove(id string) error {
	if found, err := s.mlog.remove(id); found {
		if err != nil {
			return fmt.Errorf("spool: remove %s: %w", id, err)
		}
		return s.removeStatus(id)
	}
	if err := os.Remove(s.path("queue", id)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return fmt.Errorf("spool: remove %s: %w", id, err)
	}
	if err := s.queue.sync(); err != nil {
		return fmt.Errorf("spool: remove %s: fsync queue directory: %w", id, err)
	}
	return s.removeStatus(id)
}

// removeStatus removes the status file of the removed message id, if it has one.
func (s *Spool) removeStatus(id string) error {
	unlock := s.statusMu.lock(id)
	defer unlock()
	if err := os.Remove(s.path("status", id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove status of %s: %w", id, err)
	}
	return nil
}

// keyedMutex serialises status appends per message id.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
