package imapd

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// rateLog writes log records at most logBurst at once and logRate per second for each
// message, so that a client repeating a refused command cannot flood the log (issue 15
// item 11: a CREATE loop over the mailbox cap logged 9,023 ERROR lines in 0.9 s). What it
// drops is counted and reported, as "suppressed", with the next record of the message.
type rateLog struct {
	l  *slog.Logger
	mu sync.Mutex
	b  map[string]*logBucket
}

const (
	logRate  = 5  // records per second and message
	logBurst = 20 // records at once
)

type logBucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

func newRateLog(l *slog.Logger) *rateLog { return &rateLog{l: l, b: map[string]*logBucket{}} }

func (r *rateLog) log(level slog.Level, msg string, args ...any) {
	if !r.l.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	b := r.b[msg]
	if b == nil {
		if len(r.b) > 1000 { // messages are constants; this only guards against misuse
			clear(r.b)
		}
		b = &logBucket{tokens: logBurst, last: now}
		r.b[msg] = b
	}
	b.tokens = min(logBurst, b.tokens+now.Sub(b.last).Seconds()*logRate)
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		r.mu.Unlock()
		return
	}
	b.tokens--
	suppressed := b.suppressed
	b.suppressed = 0
	r.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.l.Log(context.Background(), level, msg, args...)
}

func (r *rateLog) debug(msg string, args ...any) { r.log(slog.LevelDebug, msg, args...) }
func (r *rateLog) info(msg string, args ...any)  { r.log(slog.LevelInfo, msg, args...) }
func (r *rateLog) warn(msg string, args ...any)  { r.log(slog.LevelWarn, msg, args...) }
func (r *rateLog) error(msg string, args ...any) { r.log(slog.LevelError, msg, args...) }

// memBudget bounds the bytes of messages all sessions hold in memory at once to answer
// FETCH and SEARCH (Config.FetchMemory); a command waits for room at most
// memWait, then fails with NO [UNAVAILABLE]. Waiters are served in order.
type memBudget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	waiters []*memWaiter
}

type memWaiter struct {
	n     int64
	ready chan struct{}
}

const memWait = 30 * time.Second

func newMemBudget(max int64) *memBudget { return &memBudget{max: max} }

// acquire reserves n bytes (at most the whole budget) and returns what releases them.
func (b *memBudget) acquire(ctx context.Context, n int64) (func(), error) {
	n = min(n, b.max)
	if n <= 0 {
		return func() {}, nil
	}
	release := func() { b.release(n) }
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.max {
		b.used += n
		b.mu.Unlock()
		return release, nil
	}
	w := &memWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	t := time.NewTimer(memWait)
	defer t.Stop()
	select {
	case <-w.ready:
		return release, nil
	case <-ctx.Done():
	case <-t.C:
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile
		b.mu.Unlock()
		return release, nil
	default:
	}
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			break
		}
	}
	b.grantLocked() // a big waiter leaving may let smaller ones in
	b.mu.Unlock()
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
		Text: "the server is reading too much mail at once, try again"}
}

func (b *memBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

// grantLocked admits the waiters at the head of the queue that fit.
func (b *memBudget) grantLocked() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.max {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.used += w.n
		close(w.ready)
	}
}
