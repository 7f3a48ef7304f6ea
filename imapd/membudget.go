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

// hold is one message's share of the budget for FETCH, resized as the command moves
// between parsing the message (copy buffers, the parser's buffer and the header fields it
// keeps: parseHold) and copying its sections to the client (the copy buffers only:
// fetchHold). A client that stops reading blocks the copy in a write for up to the write
// timeout (5 minutes); it then holds only its copy buffers, not the parse's share, which
// let one stalled reader of a large message hold up to 2 MiB, the whole budget when it is
// small, and every other user's FETCH waited for it and got NO [UNAVAILABLE].
type hold struct {
	b *memBudget
	n int64
}

// resize makes the hold n bytes (at most the whole budget). Growing gives back what is
// held first, so a session never waits for room while holding part of the budget
// (sessions each holding some and waiting for more would wait each other out);
// shrinking never waits.
func (h *hold) resize(n int64) error {
	n = min(max(n, 0), h.b.max)
	if n <= h.n {
		if n < h.n {
			h.b.release(h.n - n)
			h.n = n
		}
		return nil
	}
	if h.n > 0 {
		h.b.release(h.n)
		h.n = 0
	}
	if _, err := h.b.acquire(context.Background(), n); err != nil {
		return err
	}
	h.n = n
	return nil
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
