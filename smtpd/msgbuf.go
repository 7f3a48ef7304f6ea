package smtpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sync/semaphore"

	"github.com/portcullis-mail/portcullis/policy"
)

// Message memory. Config.MaxDataMemory bounds the bytes of messages that smtpd holds in
// memory at once, from the first byte of DATA until the queue (or the mailbox, on LMTP)
// owns them:
//
//   - While a message arrives, at most spillSize of it is in memory; beyond that, or
//     when the budget has no room, it goes to an unlinked temporary file in the queue's
//     file system (Deps.TempFile). Slow senders of big messages hold disk, not memory.
//   - For the data stage the whole message is in memory (the policies read it as one
//     slice: the MIME walk, Bayes, DKIM, the date check), with what they allocate from
//     it, and the copy Deps.PrepareMessage returns: dataCost. That is reserved before the
//     message is read back from its file, waiting in arrival order (up to PolicyTimeout,
//     then 452 4.3.1) while other messages hold the budget, and released only after
//     Enqueue (or the LMTP deliveries) returned.
//
// So many concurrent senders of large messages are served one data stage after another
// instead of together, and the total stays under the budget.

// spillSize is how much of an arriving message is kept in memory before the rest goes
// to a temporary file. Most mail is smaller and never touches the file.
const spillSize = 256 << 10

// reserveStep is the granularity of reservations.
const reserveStep = 64 << 10

// policyFactor is what the data stage's policies allocate, per byte of message, on top
// of the message itself: measured with the default rules (MIME walk and date check)
// at 0.7 (base64 attachments) to 1.1 (plain text) for 16 MiB messages. One more copy for
// Deps.PrepareMessage, when it rewrites the message.
const policyFactor = 1.25

// dataCost is the memory the data stage of a message of size bytes holds at its peak:
// the message, what the policies allocate from it, and a rewritten copy when prepare.
func dataCost(size int64, prepare bool) int64 {
	n := size + int64(float64(size)*policyFactor)
	if prepare {
		n += size
	}
	return roundStep(n)
}

func roundStep(n int64) int64 { return (n + reserveStep - 1) / reserveStep * reserveStep }

// memBudget is Config.MaxDataMemory: a semaphore whose waiters are served in order.
//
// A message's share is given back only once the garbage collector has freed the message
// (runtime.AddCleanup on its bytes), not when smtpd is done with it: until then the
// bytes are still in the heap (the MIME walk's memo even keeps them for a second cycle),
// and with GOGC at 200 the next collection may be far off. When messages wait for memory
// that only such garbage holds, the waiter runs the collector.
type memBudget struct {
	sem        *semaphore.Weighted
	size       int64
	held       atomic.Int64 // what is reserved now, garbage included
	garbage    atomic.Int64 // of held: messages done with, not collected yet
	collecting atomic.Bool
}

func newMemBudget(size int64) *memBudget {
	return &memBudget{sem: semaphore.NewWeighted(size), size: size}
}

// collect runs one garbage collection (in the background; one at a time) when some of
// the budget is held by messages that are done with.
func (b *memBudget) collect() {
	if b.garbage.Load() == 0 || !b.collecting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer b.collecting.Store(false)
		runtime.GC()
	}()
}

// errNoMemory: the message memory budget had no room in time.
var errNoMemory = errors.New("message memory budget exhausted")

// reservation is one message's share of the budget.
type reservation struct {
	b    *memBudget
	held int64
}

// tryGrow raises the reservation to at least n bytes if the budget has room now.
func (r *reservation) tryGrow(n int64) bool {
	if n <= r.held {
		return true
	}
	d := roundStep(n) - r.held
	if !r.b.sem.TryAcquire(d) {
		return false
	}
	r.b.held.Add(d)
	r.held += d
	return true
}

// collectEvery is how often a message waiting for memory runs the collector while
// garbage holds part of the budget.
const collectEvery = 50 * time.Millisecond

// wait makes the reservation exactly n bytes (rounded up), waiting in line for what is
// missing until ctx ends. The caller holds nothing else of the budget meanwhile (see
// msgBuf.load), so waiters cannot deadlock each other.
func (r *reservation) wait(ctx context.Context, n int64) error {
	n = roundStep(n)
	if n > r.b.size {
		return errNoMemory
	}
	if n <= r.held {
		r.shrink(n)
		return nil
	}
	d := n - r.held
	if !r.b.sem.TryAcquire(d) {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(collectEvery)
			defer t.Stop()
			for {
				r.b.collect()
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		if err := r.b.sem.Acquire(ctx, d); err != nil {
			return errNoMemory
		}
	}
	r.b.held.Add(d)
	r.held += d
	return nil
}

// shrink gives back what the reservation holds beyond n bytes.
func (r *reservation) shrink(n int64) {
	n = roundStep(n)
	if n >= r.held {
		return
	}
	r.b.sem.Release(r.held - n)
	r.b.held.Add(n - r.held)
	r.held = n
}

func (r *reservation) release() { r.shrink(0) }

// collectTimeout bounds how long a share waits for its message to be collected: a
// cleanup that never runs (the runtime does not promise it) must not shrink the budget
// for good.
const collectTimeout = 5 * time.Minute

// releaseWhenCollected gives the reservation back once raw's memory has been freed. A
// small share is given back at once: most mail is small, its garbage is the collector's
// ordinary business, and a cleanup and a timer per message would cost more than they
// save.
func (r *reservation) releaseWhenCollected(raw []byte) {
	if r.held < spillSize || len(raw) == 0 {
		r.release()
		return
	}
	p := &pendingRelease{b: r.b, n: r.held}
	r.held = 0
	r.b.garbage.Add(p.n)
	p.mu.Lock()
	runtime.AddCleanup(&raw[0], (*pendingRelease).done, p)
	p.timer = time.AfterFunc(collectTimeout, p.done)
	p.mu.Unlock()
}

// pendingRelease is a share of the budget held by a message smtpd is done with.
type pendingRelease struct {
	b     *memBudget
	n     int64
	mu    sync.Mutex
	timer *time.Timer // the fallback, stopped when the cleanup runs
	freed bool
}

func (p *pendingRelease) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.freed {
		return
	}
	p.freed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.b.garbage.Add(-p.n)
	p.b.held.Add(-p.n)
	p.b.sem.Release(p.n)
}

// msgBuf is a message as it arrives (an io.Writer for readMessage): in memory up to
// spillSize and while the budget has room, then in a temporary file. A write error of
// the file is kept (err) and the rest of the message discarded, so that the DATA is
// still read to its end and the client gets 452 4.3.1 in step.
type msgBuf struct {
	res     reservation
	mem     []byte
	f       *os.File
	w       *bufio.Writer
	size    int64
	err     error
	newTemp func() (*os.File, error)
	// loaded is the message as the data stage holds it (see load and keep): its
	// reservation is given back when the collector has freed it.
	loaded []byte
}

func newMsgBuf(b *memBudget, newTemp func() (*os.File, error)) *msgBuf {
	return &msgBuf{res: reservation{b: b}, newTemp: newTemp}
}

func (m *msgBuf) Write(p []byte) (int, error) {
	n := len(p)
	m.size += int64(n)
	if m.err != nil {
		return n, nil
	}
	if m.f == nil {
		if l := int64(len(m.mem) + n); l <= spillSize && m.res.tryGrow(l) {
			m.mem = append(m.mem, p...)
			return n, nil
		}
		if err := m.spill(); err != nil {
			m.err = err
			return n, nil
		}
	}
	if _, err := m.w.Write(p); err != nil {
		m.err = fmt.Errorf("smtpd: writing the message to its temporary file: %w", err)
	}
	return n, nil
}

// spill moves what is in memory to a new temporary file and gives its memory back.
func (m *msgBuf) spill() error {
	f, err := m.newTemp()
	if err != nil {
		return fmt.Errorf("smtpd: temporary file for a large message: %w", err)
	}
	m.f = f
	m.w = bufio.NewWriterSize(f, 32<<10)
	if _, err := m.w.Write(m.mem); err != nil {
		return fmt.Errorf("smtpd: writing the message to its temporary file: %w", err)
	}
	m.mem = nil
	m.res.release()
	return nil
}

// load reserves cost bytes for the data stage (waiting in line until ctx ends) and
// returns the whole message in memory. A message still in memory that would have to
// wait goes to its file first, so that no waiter holds part of the budget.
func (m *msgBuf) load(ctx context.Context, cost int64) ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	if m.f == nil && !m.res.tryGrow(cost) {
		if err := m.spill(); err != nil {
			return nil, err
		}
	}
	if m.f == nil {
		m.loaded = m.mem
		return m.mem, nil
	}
	if err := m.res.wait(ctx, cost); err != nil {
		return nil, err
	}
	if err := m.w.Flush(); err != nil {
		return nil, fmt.Errorf("smtpd: writing the message to its temporary file: %w", err)
	}
	raw := make([]byte, m.size)
	m.loaded = raw
	if _, err := m.f.ReadAt(raw, 0); err != nil && !(errors.Is(err, io.EOF) && m.size == 0) {
		return nil, fmt.Errorf("smtpd: reading the message back from its temporary file: %w", err)
	}
	return raw, nil
}

// keep records raw (what PrepareMessage made of the loaded message) as the bytes whose
// collection gives the reservation back.
func (m *msgBuf) keep(raw []byte) { m.loaded = raw }

// close removes the temporary file and gives the memory back: at once when the message
// was never loaded, else once the collector has freed it.
func (m *msgBuf) close() {
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
	m.mem = nil
	m.res.releaseWhenCollected(m.loaded)
	m.loaded = nil
}

// tempFileIn returns a Deps.TempFile that creates anonymous files in dir: created, then
// unlinked at once, so that nothing is left behind by a crash.
func tempFileIn(dir string) func() (*os.File, error) {
	return func() (*os.File, error) {
		f, err := os.CreateTemp(dir, "smtpd-message-*")
		if err != nil {
			return nil, err
		}
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
}

// freeSpaceTTL is how long a free-space reading serves: one statfs a second rather than
// one per MAIL command, whatever the rate of transactions.
var freeSpaceTTL = time.Second

// queueFree returns the queue's free space, read at most once per freeSpaceTTL.
func (s *Server) queueFree() (int64, error) {
	now := time.Now().UnixNano()
	if at := s.freeAt.Load(); at != 0 && now-at < int64(freeSpaceTTL) {
		return s.freeBytes.Load(), nil
	}
	free, err := s.freeSpace()
	if err != nil {
		return 0, err
	}
	s.freeBytes.Store(free)
	s.freeAt.Store(now)
	return free, nil
}

// checkQueueSpace refuses MAIL while the queue's file system has less free space than
// Config.QueueMinFree, or less than 1.5 times the announced SIZE (Postfix's
// queue_minfree and its smtpd_check_size), so that a full disk is told before the client
// sends the message rather than after. A probe that fails lets the mail in: the queue
// write will say.
func (st *connState) checkQueueSpace(opts *smtp.MailOptions) error {
	if st.srv.freeSpace == nil || st.l.cfg.Mode == ModeLMTP {
		return nil
	}
	free, err := st.srv.queueFree()
	if err != nil {
		st.srv.log.Warn("smtp free space check failed", "id", st.tx.Conn.ID, "err", err)
		return nil
	}
	need := int64(st.srv.cfg.QueueMinFree)
	if opts != nil && opts.Size/2*3 > need {
		need = opts.Size / 2 * 3
	}
	if free >= need {
		return nil
	}
	st.srv.log.Warn("smtp MAIL refused: not enough free space for the queue (queue_min_free)", "id", st.tx.Conn.ID,
		"client_ip", st.tx.Conn.IP.String(), "free", free, "need", need)
	return st.refuse(policy.StageMail, replyNoSpace, "queue_space")
}
