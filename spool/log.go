package spool

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portcullis-mail/portcullis/internal/groupsync"
)

// The incoming log is the fast path of Enqueue for messages up to Config.MaxInlineSize.
// Instead of a file, an fsync, a rename and a directory fsync per message, a message is one
// record appended to a segment file, and one fdatasync covers every record appended since
// the last one (group commit). A message stays in the log while it is being delivered;
// when it is deferred or held it moves to its own file in queue/ so that it does not keep
// a segment alive, and a segment is deleted once all its messages are gone.
//
// Layout: log/SEQ.seg holds records, log/SEQ.dead lists the ids removed from it, one per
// line. SEQ is 16 hex digits, increasing. A record is
//
//	PCLOG1 ID EEEEEEEE MMMMMMMMMMMMMMMM CCCCCCCC\n   (63 bytes)
//	envelope JSON (E bytes), message (M bytes)
//
// with E and M in hex and C the CRC-32C of envelope and message. Records are written in
// order under a lock, so the acknowledged records of a segment are a prefix of it: recovery
// reads records by their lengths (never looking inside a message) and stops at the first
// one that does not check out, the tail of a write that a crash interrupted.

const (
	recMagic  = "PCLOG1 "
	recHdrLen = len(recMagic) + idLen + 1 + 8 + 1 + 16 + 1 + 8 + 1

	defaultInlineBytes  = 1 << 20
	defaultSegmentBytes = 64 << 20
)

type segment struct {
	seq       uint64
	f         *os.File // append handle (nil in read-only mode)
	dead      *os.File // append handle of the .dead file
	size      int64
	live      int
	dirty     bool // records written since the last fdatasync
	deadDirty bool
}

type logLoc struct {
	seg            *segment
	off            int64 // of the record header
	envLen, msgLen int64
}

type msgLog struct {
	dir      string
	maxSeg   int64
	readOnly bool
	group    bool

	mu     sync.Mutex
	segs   map[uint64]*segment
	active *segment
	index  map[string]logLoc

	syncMu sync.RWMutex      // held for reading during fdatasyncs, for writing to close files
	syncer *groupsync.Syncer // around syncDirty, with group commit
	dirF   *os.File
	// stopDead ends the goroutine that flushes dead lists (see flushDead).
	stopDead chan struct{}
	deadDone chan struct{}
}

// deadFlushEvery is how often removals (dead-list entries) are fdatasynced. Removals do
// not wait for the disk: a process crash keeps them (they are in the page cache), and a
// power loss within this interval only makes the queue deliver those messages again,
// never lose one. Enqueues, which must not be lost, keep their own group commit and no
// longer pay for the delivery side's flushes.
const deadFlushEvery = time.Second

func segPath(dir string, seq uint64, ext string) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.%s", seq, ext))
}

// openLog recovers the log in dir. In read-only mode (an administrator's process while the
// owner runs) it only reads.
func openLog(dir string, maxSeg int64, readOnly, group bool) (*msgLog, error) {
	l := &msgLog{dir: dir, maxSeg: maxSeg, readOnly: readOnly, group: group, segs: map[uint64]*segment{}, index: map[string]logLoc{}}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".seg")
		if !ok {
			continue
		}
		if seq, err := strconv.ParseUint(name, 16, 64); err == nil && len(name) == 16 {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		if err := l.load(seq); err != nil {
			// Beside a running owner, a segment listed a moment ago may be gone: the
			// owner deletes a sealed segment once nothing in it is live (gc), so there is
			// nothing to read in it.
			if readOnly && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
	}
	if readOnly {
		return l, nil
	}
	if l.dirF, err = os.Open(dir); err != nil {
		return nil, err
	}
	for _, de := range des { // dead lists whose segment is gone: the tail of a gc
		if name, ok := strings.CutSuffix(de.Name(), ".dead"); ok {
			if seq, err := strconv.ParseUint(name, 16, 64); err == nil && l.segs[seq] == nil {
				if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, seg := range l.segs {
		// Removals from recovered segments are recorded in their dead lists. A dead list
		// created here is made durable by the directory fsync of newSegment below.
		if seg.dead, err = os.OpenFile(segPath(dir, seg.seq, "dead"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return nil, err
		}
	}
	next := uint64(1)
	if len(seqs) > 0 {
		next = seqs[len(seqs)-1] + 1
	}
	// Appends always go to a fresh segment: a recovered one may end in a torn record.
	if err := l.newSegment(next); err != nil {
		return nil, err
	}
	if err := l.gc(); err != nil {
		return nil, err
	}
	l.syncer = groupsync.New(l.syncDirty)
	l.stopDead, l.deadDone = make(chan struct{}), make(chan struct{})
	go l.flushDeadLoop()
	return l, nil
}

func (l *msgLog) flushDeadLoop() {
	defer close(l.deadDone)
	t := time.NewTicker(deadFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stopDead:
			return
		case <-t.C:
			_ = l.flushDead() // a failure is retried at the next tick and at close
		}
	}
}

// flushDead fdatasyncs the dead lists written since the last flush.
func (l *msgLog) flushDead() error {
	return l.syncFiles(func(seg *segment) (*os.File, *bool) { return seg.dead, &seg.deadDirty })
}

// load reads one segment into the index.
func (l *msgLog) load(seq uint64) error {
	seg := &segment{seq: seq}
	dead := map[string]bool{}
	if b, err := os.ReadFile(segPath(l.dir, seq, "dead")); err == nil {
		for _, id := range strings.Split(string(b), "\n") {
			dead[id] = true
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.Open(segPath(l.dir, seq, "seg"))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(f, 256<<10)
	var off int64
	hdr := make([]byte, recHdrLen)
	for off < st.Size() {
		if _, err := io.ReadFull(br, hdr); err != nil {
			break
		}
		id, envLen, msgLen, sum, ok := parseRecHeader(hdr)
		// Each length is checked on its own first, so that the sum cannot overflow.
		if !ok || envLen > st.Size() || msgLen > st.Size() || off+int64(recHdrLen)+envLen+msgLen > st.Size() {
			break
		}
		body := make([]byte, envLen+msgLen)
		if _, err := io.ReadFull(br, body); err != nil || crc32.Checksum(body, crcTable) != sum {
			break
		}
		if !dead[id] {
			l.index[id] = logLoc{seg: seg, off: off, envLen: envLen, msgLen: msgLen}
			seg.live++
		}
		off += int64(recHdrLen) + envLen + msgLen
	}
	seg.size = off
	l.segs[seq] = seg
	return nil
}

func parseRecHeader(h []byte) (id string, envLen, msgLen int64, sum uint32, ok bool) {
	if len(h) != recHdrLen || !bytes.HasPrefix(h, []byte(recMagic)) || h[recHdrLen-1] != '\n' {
		return "", 0, 0, 0, false
	}
	f := strings.Split(string(h[len(recMagic):recHdrLen-1]), " ")
	if len(f) != 4 || !ValidID(f[0]) || len(f[1]) != 8 || len(f[2]) != 16 || len(f[3]) != 8 {
		return "", 0, 0, 0, false
	}
	e, err1 := strconv.ParseInt(f[1], 16, 64)
	m, err2 := strconv.ParseInt(f[2], 16, 64)
	c, err3 := strconv.ParseUint(f[3], 16, 32)
	if err1 != nil || err2 != nil || err3 != nil || e <= 0 || e > maxEnvelope || m < 0 {
		return "", 0, 0, 0, false
	}
	return f[0], e, m, uint32(c), true
}

// newSegment creates the segment files and makes their names durable. l.mu is held (or
// not yet shared).
func (l *msgLog) newSegment(seq uint64) error {
	f, err := os.OpenFile(segPath(l.dir, seq, "seg"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	d, err := os.OpenFile(segPath(l.dir, seq, "dead"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return err
	}
	if err := l.dirF.Sync(); err != nil {
		f.Close()
		d.Close()
		return err
	}
	seg := &segment{seq: seq, f: f, dead: d}
	l.segs[seq] = seg
	l.active = seg
	return nil
}

// append writes a record for id and returns once it is durable.
func (l *msgLog) append(id string, rec []byte, envLen, msgLen int64) error {
	l.mu.Lock()
	if l.active.size > 0 && l.active.size+int64(len(rec)) > l.maxSeg {
		// Seal the segment: its records are durable before any goes to the next one.
		old := l.active
		if err := syscall.Fdatasync(int(old.f.Fd())); err != nil {
			l.mu.Unlock()
			return fmt.Errorf("fdatasync log segment: %w", err)
		}
		old.dirty = false
		if err := l.newSegment(old.seq + 1); err != nil {
			l.mu.Unlock()
			return fmt.Errorf("new log segment: %w", err)
		}
	}
	seg := l.active
	off := seg.size
	if _, err := seg.f.WriteAt(rec, off); err != nil {
		l.mu.Unlock()
		return fmt.Errorf("write log: %w", err)
	}
	seg.size += int64(len(rec))
	seg.dirty = true
	seg.live++
	l.index[id] = logLoc{seg: seg, off: off, envLen: envLen, msgLen: msgLen}
	l.mu.Unlock()
	if err := l.sync(seg.f); err != nil {
		l.drop(id) // unknown durability: take it back so that the client's retry is the only copy
		return fmt.Errorf("fdatasync log: %w", err)
	}
	return nil
}

// sync makes what was written to f durable: with group commit by an fdatasync of every
// dirty segment shared with the callers waiting at the same time, otherwise by this
// caller's own fdatasync.
func (l *msgLog) sync(f *os.File) error {
	if l.group {
		return l.syncer.Sync()
	}
	l.syncMu.RLock()
	defer l.syncMu.RUnlock()
	return syscall.Fdatasync(int(f.Fd()))
}

// syncDirty is the group commit's sync: one fdatasync per segment written since the last
// one. Dead lists are flushed on their own schedule (flushDead).
func (l *msgLog) syncDirty() error {
	return l.syncFiles(func(seg *segment) (*os.File, *bool) { return seg.f, &seg.dirty })
}

// syncFiles fdatasyncs, for every segment, the file pick returns when its dirty flag is
// set, clearing the flag first (a write after that sets it again for the next round).
func (l *msgLog) syncFiles(pick func(*segment) (*os.File, *bool)) error {
	l.syncMu.RLock()
	defer l.syncMu.RUnlock()
	var files []*os.File
	l.mu.Lock()
	for _, seg := range l.segs {
		if f, dirty := pick(seg); *dirty && f != nil {
			files = append(files, f)
			*dirty = false
		}
	}
	l.mu.Unlock()
	var errs []error
	for _, f := range files {
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *msgLog) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.index[id]
	return ok
}

func (l *msgLog) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.index))
	for id := range l.index {
		out = append(out, id)
	}
	return out
}

// open returns the envelope and a reader of the message of a log entry.
func (l *msgLog) open(id string) (Envelope, *Message, bool, error) {
	l.mu.Lock()
	loc, ok := l.index[id]
	l.mu.Unlock()
	if !ok {
		return Envelope{}, nil, false, nil
	}
	f, err := os.Open(segPath(l.dir, loc.seg.seq, "seg"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) { // removed meanwhile
			return Envelope{}, nil, false, nil
		}
		return Envelope{}, nil, true, err
	}
	ej := make([]byte, loc.envLen)
	if _, err := f.ReadAt(ej, loc.off+int64(recHdrLen)); err != nil {
		f.Close()
		return Envelope{}, nil, true, fmt.Errorf("read log envelope: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(ej, &env); err != nil {
		f.Close()
		return Envelope{}, nil, true, fmt.Errorf("decode log envelope: %w", err)
	}
	return env, &Message{SectionReader: io.NewSectionReader(f, loc.off+int64(recHdrLen)+loc.envLen, loc.msgLen), f: f}, true, nil
}

// remove marks id removed durably. It reports false when id is not in the log.
func (l *msgLog) remove(id string) (bool, error) {
	if _, ok := l.drop(id); !ok {
		return false, nil
	}
	// No fdatasync here: see deadFlushEvery.
	return true, l.gc()
}

// drop takes id out of the index and appends it to its segment's dead list.
func (l *msgLog) drop(id string) (*segment, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	loc, ok := l.index[id]
	if !ok {
		return nil, false
	}
	delete(l.index, id)
	loc.seg.live--
	if loc.seg.dead != nil {
		loc.seg.dead.Write([]byte(id + "\n")) // a failure shows at the fdatasync
		loc.seg.deadDirty = true
	}
	return loc.seg, true
}

// gc deletes sealed segments without live messages.
func (l *msgLog) gc() error {
	l.mu.Lock()
	var drop []*segment
	for seq, seg := range l.segs {
		if seg.live <= 0 && seg != l.active {
			drop = append(drop, seg)
			delete(l.segs, seq)
		}
	}
	l.mu.Unlock()
	if len(drop) == 0 {
		return nil
	}
	l.syncMu.Lock() // no fdatasync is using these files
	for _, seg := range drop {
		if seg.f != nil {
			seg.f.Close()
		}
		if seg.dead != nil {
			seg.dead.Close()
		}
	}
	l.syncMu.Unlock()
	// The segments go first and durably; only then their dead lists. In the other order a
	// crash could bring back a segment without the list of what was removed from it.
	var errs []error
	for _, ext := range []string{"seg", "dead"} {
		for _, seg := range drop {
			if err := os.Remove(segPath(l.dir, seg.seq, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, l.dirF.Sync())
	}
	return errors.Join(errs...)
}

func (l *msgLog) close() error {
	if l.readOnly {
		return nil
	}
	l.syncer.Close()
	close(l.stopDead)
	<-l.deadDone
	err := l.flushDead()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, seg := range l.segs {
		if seg.f != nil {
			seg.f.Close()
		}
		if seg.dead != nil {
			seg.dead.Close()
		}
	}
	return errors.Join(err, l.dirF.Close())
}

// encodeRecord builds a log record.
func encodeLogRecord(id string, ej, msg []byte) []byte {
	h := crc32.Update(crc32.Checksum(ej, crcTable), crcTable, msg)
	rec := make([]byte, 0, recHdrLen+len(ej)+len(msg))
	rec = fmt.Appendf(rec, "%s%s %08x %016x %08x\n", recMagic, id, len(ej), len(msg), h)
	rec = append(rec, ej...)
	return append(rec, msg...)
}
