// Package spool is portcullis's durable mail queue on disk. Enqueue returns only when the
// message and its envelope are on stable storage, so the SMTP server can answer 250 the
// moment it returns. Messages up to Config.MaxInlineSize are appended to an incoming log
// whose fdatasync is shared by every Enqueue running at the same time (group commit), which
// is what lets one disk accept thousands of messages per second; larger messages, and
// messages that have to wait (deferred, held), live in a file of their own (written to a
// temporary file, fsynced, renamed into queue/, the directory fsynced).
//
// A crash at any moment leaves each message either complete in the queue or absent: a log
// record counts only when its checksum does, a file only once renamed. Delivery reads the
// queue with List and Open, records per-recipient results durably in an append-only status
// file (Append, Status), and calls Remove or Complete once every recipient has a final
// status.
//
// Layout under the spool directory:
//
//	lock         flock(2)ed by the process that owns the spool
//	log/SEQ.seg  incoming log segments; log/SEQ.dead lists the ids removed from each
//	tmp/ID       a message file being written (removed on Open)
//	queue/ID     message files: header line, message bytes, envelope JSON
//	status/ID    append-only status records of a queued message, one JSON line each
//	corrupt/ID   queue files that failed validation on Open, kept for a human
//	kick         touched by queue commands in other processes (see Kicked)
package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// Config configures a Spool. The zero value is ready to use.
type Config struct {
	// DisableGroupCommit makes every Enqueue fsync the queue directory on its own instead of
	// sharing one fsync with the Enqueue calls running at the same time. Only useful to
	// measure what group commit buys.
	DisableGroupCommit bool `yaml:"disable_group_commit"`
	// MaxMessageSize refuses larger messages in Enqueue (ErrTooLarge). 0 means 256MiB;
	// the SMTP server's own size limit should be lower.
	MaxMessageSize bytesize.Size `yaml:"max_message_size"`
	// Shared opens a spool that another process (the running server) holds, for the queue
	// administration commands: no recovery is done and nothing is removed behind the owner's
	// back. Without Shared, Open fails with ErrLocked when the spool is in use.
	Shared bool `yaml:"-"`
	// DisableLog stores every message in its own file instead of appending messages up to
	// MaxInlineSize to the incoming log (see log.go). Only useful for comparison.
	DisableLog bool `yaml:"disable_log"`
	// MaxInlineSize is the largest message that goes to the incoming log. [1MiB]
	MaxInlineSize bytesize.Size `yaml:"max_inline_size"`
	// SegmentSize is the size at which a log segment is sealed and a new one started. [64MiB]
	SegmentSize bytesize.Size `yaml:"segment_size"`
	// Logger receives recovery and error reports; nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// Errors returned by the spool.
var (
	ErrNotFound = errors.New("spool: no such message")
	ErrTooLarge = errors.New("spool: message too large")
	ErrLocked   = errors.New("spool: in use by another process")
	ErrNotFinal = errors.New("spool: a recipient has no final status yet")
	ErrBadID    = errors.New("spool: malformed message id")
	ErrClosed   = errors.New("spool: closed")
)

const defaultMaxMessageBytes = 256 << 20

// Spool is a queue directory. Its methods are safe for concurrent use.
type Spool struct {
	dir      string
	cfg      Config
	log      *slog.Logger
	lock     *os.File
	queue    *dirSync
	status   *dirSync
	maxBytes int64
	mlog     *msgLog // the incoming log; read-only in Shared mode
	inline   int64   // 0: the log takes no new messages

	mu       sync.RWMutex
	closed   bool
	watchers []func(id string)
	statusMu keyedMutex
}

// Open opens (creating if needed) the spool in dir. Unless cfg.Shared is set it takes an
// exclusive lock on the directory and recovers: temporary files left by a crash are
// removed, queue files that fail validation are moved to corrupt/, and status files of
// messages no longer queued are removed.
func Open(dir string, cfg Config) (*Spool, error) {
	s := &Spool{dir: dir, cfg: cfg, log: cfg.Logger, maxBytes: int64(cfg.MaxMessageSize)}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxBytes <= 0 {
		s.maxBytes = defaultMaxMessageBytes
	}
	for _, sub := range []string{"", "tmp", "queue", "status", "corrupt", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("spool: create %s: %w", filepath.Join(dir, sub), err)
		}
	}
	// Make the directories themselves durable, or a crash could lose a whole queue dir.
	for _, d := range []string{filepath.Dir(filepath.Clean(dir)), dir} {
		if err := syncDir(d); err != nil {
			return nil, fmt.Errorf("spool: fsync %s: %w", d, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			lock.Close()
			return nil, fmt.Errorf("spool: lock %s: %w", dir, err)
		}
		if !cfg.Shared {
			lock.Close()
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		lock.Close()
		lock = nil
	}
	s.lock = lock
	group := !cfg.DisableGroupCommit
	segBytes := int64(cfg.SegmentSize)
	if segBytes <= 0 {
		segBytes = defaultSegmentBytes
	}
	// The log is always read, even with DisableLog, so that nothing it holds is forgotten.
	if s.mlog, err = openLog(filepath.Join(dir, "log"), segBytes, lock == nil, group); err != nil {
		s.closeLock()
		return nil, fmt.Errorf("spool: open log: %w", err)
	}
	if lock != nil && !cfg.DisableLog {
		s.inline = int64(cfg.MaxInlineSize)
		if s.inline <= 0 {
			s.inline = defaultInlineBytes
		}
		s.inline = min(s.inline, s.maxBytes)
	}
	if lock != nil {
		if err := s.recover(); err != nil {
			s.mlog.close()
			lock.Close()
			return nil, err
		}
	}
	if s.queue, err = openDirSync(filepath.Join(dir, "queue"), group); err != nil {
		s.closeLock()
		return nil, fmt.Errorf("spool: %w", err)
	}
	if s.status, err = openDirSync(filepath.Join(dir, "status"), group); err != nil {
		s.queue.close()
		s.closeLock()
		return nil, fmt.Errorf("spool: %w", err)
	}
	return s, nil
}

func (s *Spool) closeLock() {
	if s.lock != nil {
		s.lock.Close()
	}
}

// Close waits for the fsyncs in progress and releases the lock. Enqueue calls still
// running get ErrClosed or finish; a message whose Enqueue returned an id stays queued.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := errors.Join(s.queue.close(), s.status.close(), s.mlog.close())
	s.closeLock()
	return err
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Watch registers fn to be called with the id of every message Enqueue makes durable, after
// it is durable and before Enqueue returns. fn must not block: a delivery runner records
// the id and wakes itself.
func (s *Spool) Watch(fn func(id string)) {
	s.mu.Lock()
	s.watchers = append(s.watchers, fn)
	s.mu.Unlock()
}

func (s *Spool) path(sub, id string) string { return filepath.Join(s.dir, sub, id) }

// The file format. A queue file is
//
//	portcullis-spool v1 OOOOOOOOOOOOOOOO LLLLLLLL\n   (header, fixed 46 bytes)
//	message bytes                                     (offset 46 up to O)
//	envelope JSON                                     (L bytes at offset O)
//
// with O and L in hex. The header is written last (at offset 0), so the offsets are known;
// a file is valid only when its size is exactly O+L and the envelope parses. The envelope
// goes after the message because the message is streamed and its size is known only then.
const (
	headerMagic  = "portcullis-spool v1 "
	headerLen    = len(headerMagic) + 16 + 1 + 8 + 1
	maxEnvelope  = 16 << 20 // a 1000-recipient envelope is ~100 KB; this is far beyond
	copyBufBytes = 64 << 10
)

var blankHeader = bytes.Repeat([]byte{' '}, headerLen)

// FormatVersion is the version of the queue file format written by this package.
const FormatVersion = 1

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufBytes); return &b }}

// Enqueue stores the message read from msg with its envelope and returns its id once both
// are durable. The envelope's ID and Size are set by Enqueue. It fails without leaving
// anything behind when msg returns an error, ctx ends before the message is committed, or
// the message exceeds Config.MaxMessageSize (ErrTooLarge).
func (s *Spool) Enqueue(ctx context.Context, env Envelope, msg io.Reader) (string, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return "", ErrClosed
	}
	if len(env.To) == 0 {
		return "", errors.New("spool: enqueue: envelope has no recipients")
	}
	id := newID()
	if s.inline > 0 {
		buf, small, err := s.readInline(ctx, msg)
		if err != nil {
			return "", err
		}
		if small {
			return s.enqueueLog(env, id, buf)
		}
		msg = io.MultiReader(bytes.NewReader(buf), msg) // too big for the log: a file of its own
	}
	tmp := s.path("tmp", id)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("spool: enqueue: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	if err := s.writeFile(ctx, f, &env, id, msg); err != nil {
		return "", err
	}
	if err := s.commitFile(ctx, f, id); err != nil {
		committed = true // commitFile cleaned up
		return "", err
	}
	committed = true
	s.notify(id)
	return id, nil
}

// readInline reads msg up to the inline limit. small reports that msg ended within it.
func (s *Spool) readInline(ctx context.Context, msg io.Reader) (buf []byte, small bool, err error) {
	buf = make([]byte, 0, 8<<10)
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("spool: enqueue: %w", err)
		}
		if len(buf) == cap(buf) {
			if int64(len(buf)) > s.inline {
				return buf, false, nil
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, rerr := msg.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if rerr == io.EOF {
			return buf, int64(len(buf)) <= s.inline, nil
		}
		if rerr != nil {
			return nil, false, fmt.Errorf("spool: enqueue: reading message: %w", rerr)
		}
	}
}

// enqueueLog appends a message to the incoming log and returns once it is durable.
func (s *Spool) enqueueLog(env Envelope, id string, msg []byte) (string, error) {
	env.ID, env.Size = id, int64(len(msg))
	ej, err := json.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("spool: enqueue: encode envelope: %w", err)
	}
	if len(ej) > maxEnvelope {
		return "", fmt.Errorf("%w: envelope of %d bytes", ErrTooLarge, len(ej))
	}
	if err := s.mlog.append(id, encodeLogRecord(id, ej, msg), int64(len(ej)), int64(len(msg))); err != nil {
		return "", fmt.Errorf("spool: enqueue: %w", err)
	}
	s.notify(id)
	return id, nil
}

func (s *Spool) notify(id string) {
	s.mu.RLock()
	watchers := s.watchers
	s.mu.RUnlock()
	for _, w := range watchers {
		w(id)
	}
}

// commitFile makes a written temporary file durable and moves it into the queue. On error
// the temporary file is gone.
func (s *Spool) commitFile(ctx context.Context, f *os.File, id string) error {
	tmp := s.path("tmp", id)
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("spool: enqueue: fsync %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: enqueue: close %s: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: enqueue: %w", err)
	}
	final := s.path("queue", id)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: enqueue: rename into queue: %w", err)
	}
	// From here the message may survive a crash, so no ctx check: the caller learns of the
	// outcome only after the directory fsync, whichever way it goes.
	if err := s.queue.sync(); err != nil {
		// The rename's durability is unknown. Take the file back so that the client's retry
		// does not produce a duplicate; if the unlink fails too, the message stays queued
		// and may be delivered twice, which is better than lost.
		if rerr := os.Remove(final); rerr != nil {
			s.log.Error("spool: cannot withdraw message after fsync failure", "id", id, "err", rerr)
		}
		return fmt.Errorf("spool: enqueue: fsync queue directory: %w", err)
	}
	return nil
}

// writeFile streams msg after a placeholder header, appends the envelope and writes the
// real header. It sets env.ID and env.Size.
func (s *Spool) writeFile(ctx context.Context, f *os.File, env *Envelope, id string, msg io.Reader) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	// The placeholder header is all spaces: a file that never got its real header fails
	// validation (it cannot be in the queue anyway, since the rename comes after).
	copy(buf, blankHeader)
	n := headerLen // bytes buffered
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("spool: enqueue: %w", err)
		}
		m, rerr := msg.Read(buf[n:])
		n += m
		size += int64(m)
		if size > s.maxBytes {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, s.maxBytes)
		}
		if n == len(buf) || (rerr != nil && n > 0) {
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("spool: enqueue: write: %w", err)
			}
			n = 0
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("spool: enqueue: reading message: %w", rerr)
		}
	}
	env.ID = id
	env.Size = size
	ej, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("spool: enqueue: encode envelope: %w", err)
	}
	if len(ej) > maxEnvelope {
		return fmt.Errorf("%w: envelope of %d bytes", ErrTooLarge, len(ej))
	}
	if _, err := f.Write(ej); err != nil {
		return fmt.Errorf("spool: enqueue: write envelope: %w", err)
	}
	envOff := int64(headerLen) + size
	hdr := fmt.Sprintf("%s%016x %08x\n", headerMagic, envOff, len(ej))
	if _, err := f.WriteAt([]byte(hdr), 0); err != nil {
		return fmt.Errorf("spool: enqueue: write header: %w", err)
	}
	return nil
}

// Message is a queued message's content: a reader over the message bytes only.
type Message struct {
	*io.SectionReader
	f *os.File
}

// Close releases the file.
func (m *Message) Close() error { return m.f.Close() }

// Open returns the envelope and the message of a queued message. The caller closes the
// Message. A message removed meanwhile gives ErrNotFound.
func (s *Spool) Open(id string) (Envelope, *Message, error) {
	if !ValidID(id) {
		return Envelope{}, nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	if env, m, ok, err := s.mlog.open(id); ok {
		if err != nil {
			return Envelope{}, nil, fmt.Errorf("spool: open %s: %w", id, err)
		}
		return env, m, nil
	}
	f, err := os.Open(s.path("queue", id))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Envelope{}, nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return Envelope{}, nil, fmt.Errorf("spool: open %s: %w", id, err)
	}
	env, size, err := readEnvelope(f)
	if err != nil {
		f.Close()
		return Envelope{}, nil, fmt.Errorf("spool: open %s: %w", id, err)
	}
	return env, &Message{SectionReader: io.NewSectionReader(f, int64(headerLen), size), f: f}, nil
}

// Envelope returns the envelope of a queued message.
func (s *Spool) Envelope(id string) (Envelope, error) {
	env, m, err := s.Open(id)
	if err != nil {
		return Envelope{}, err
	}
	m.Close()
	return env, nil
}

// readEnvelope validates a queue file and returns its envelope and message size.
func readEnvelope(f *os.File) (Envelope, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return Envelope{}, 0, err
	}
	var hdr [headerLen]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return Envelope{}, 0, fmt.Errorf("read header: %w", err)
	}
	off, length, err := parseHeader(hdr[:])
	if err != nil {
		return Envelope{}, 0, err
	}
	if off < int64(headerLen) || length <= 0 || length > maxEnvelope || off+length != st.Size() {
		return Envelope{}, 0, fmt.Errorf("truncated or inconsistent file (size %d, envelope %d+%d)", st.Size(), off, length)
	}
	ej := make([]byte, length)
	if _, err := f.ReadAt(ej, off); err != nil {
		return Envelope{}, 0, fmt.Errorf("read envelope: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(ej, &env); err != nil {
		return Envelope{}, 0, fmt.Errorf("decode envelope: %w", err)
	}
	size := off - int64(headerLen)
	if env.Size != size {
		return Envelope{}, 0, fmt.Errorf("envelope says %d bytes, file holds %d", env.Size, size)
	}
	return env, size, nil
}

func parseHeader(h []byte) (off, length int64, err error) {
	if len(h) != headerLen || !bytes.HasPrefix(h, []byte(headerMagic)) || h[headerLen-1] != '\n' ||
		h[len(headerMagic)+16] != ' ' {
		if bytes.HasPrefix(h, []byte("portcullis-spool v")) {
			return 0, 0, fmt.Errorf("unsupported format %q (this build reads v%d)", bytes.TrimSpace(h), FormatVersion)
		}
		return 0, 0, errors.New("not a spool file (bad header)")
	}
	o, err1 := strconv.ParseInt(string(h[len(headerMagic):len(headerMagic)+16]), 16, 64)
	l, err2 := strconv.ParseInt(string(h[len(headerMagic)+17:headerLen-1]), 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errors.New("bad header offsets")
	}
	return o, l, nil
}

// List returns the ids of the queued messages, oldest first.
func (s *Spool) List() ([]string, error) {
	des, err := os.ReadDir(filepath.Join(s.dir, "queue"))
	if err != nil {
		return nil, fmt.Errorf("spool: list: %w", err)
	}
	ids := s.mlog.ids()
	inLog := make(map[string]bool, len(ids))
	for _, id := range ids {
		inLog[id] = true
	}
	for _, de := range des {
		if ValidID(de.Name()) && !inLog[de.Name()] {
			ids = append(ids, de.Name())
		}
	}
	sort.Strings(ids) // ids sort by arrival time
	return ids, nil
}

// recover runs at Open in the owning process.
func (s *Spool) recover() error {
	tmp := filepath.Join(s.dir, "tmp")
	des, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	for _, de := range des {
		// Never acknowledged: the rename into queue/ is the commit point.
		if err := os.Remove(filepath.Join(tmp, de.Name())); err != nil {
			return fmt.Errorf("spool: recover: remove %s: %w", de.Name(), err)
		}
	}
	if len(des) > 0 {
		s.log.Info("spool: removed unfinished temporary files", "count", len(des))
	}

	queued := map[string]bool{}
	qdir := filepath.Join(s.dir, "queue")
	des, err = os.ReadDir(qdir)
	if err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	moved := false
	var dups []string
	for _, de := range des {
		name := de.Name()
		err := errors.New("not a spool id")
		if ValidID(name) {
			err = checkFile(filepath.Join(qdir, name))
		}
		if err == nil {
			queued[name] = true
			if s.mlog.has(name) {
				dups = append(dups, name)
			}
			continue
		}
		s.log.Error("spool: moving invalid queue file aside", "file", name, "err", err)
		if err := os.Rename(filepath.Join(qdir, name), filepath.Join(s.dir, "corrupt", name)); err != nil {
			return fmt.Errorf("spool: recover: move %s aside: %w", name, err)
		}
		moved = true
	}
	if moved || len(dups) > 0 {
		if err := errors.Join(syncDir(filepath.Join(s.dir, "corrupt")), syncDir(qdir)); err != nil {
			return fmt.Errorf("spool: recover: %w", err)
		}
	}
	// A move out of the log (migrate) that a crash interrupted left two copies: the file,
	// durable now, is the one that counts.
	for _, id := range dups {
		if _, err := s.mlog.remove(id); err != nil {
			return fmt.Errorf("spool: recover: %w", err)
		}
	}

	sdir := filepath.Join(s.dir, "status")
	des, err = os.ReadDir(sdir)
	if err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	for _, de := range des {
		if !queued[de.Name()] && !s.mlog.has(de.Name()) {
			// Remove unlinks the queue file first, so a status file alone is the tail of a
			// finished removal.
			if err := os.Remove(filepath.Join(sdir, de.Name())); err != nil {
				return fmt.Errorf("spool: recover: %w", err)
			}
		}
	}
	return nil
}

func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, err = readEnvelope(f)
	return err
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
