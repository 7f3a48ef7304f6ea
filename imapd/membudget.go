package imapd

import (
	"context"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

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
