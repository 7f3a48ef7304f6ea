package greylist

import (
	"context"
	"sync"

	"github.com/portcullis-mail/portcullis/internal/evict"
)

// Store keeps the triplets and the clients' auto-allow counts. Each method applies one
// step atomically (two front-ends sharing a store never lose an update) and is bounded by
// ctx.
type Store interface {
	// Triplet applies an attempt of the triplet key at now (Step) and returns the stored
	// entry and whether the triplet had passed before.
	Triplet(ctx context.Context, key string, now int64, p Params) (Entry, bool, error)
	// ClientAllowed applies ClientCheck to the client key.
	ClientAllowed(ctx context.Context, key string, now, threshold int64, p Params) (bool, error)
	// ClientPassed applies ClientPass to the client key.
	ClientPassed(ctx context.Context, key string, now int64, p Params) error
	Close() error
}

// MemoryStore keeps the state in memory: for one process whose greylisting state may be
// lost on restart (a lost entry greylists one retry again). It drops entries not seen for
// MaxAge as it goes, and holds at most maxMemoryEntries triplets and as many clients: a
// flood of new triplets from many addresses (each kept a RetryWindow, two days) would
// otherwise grow it without end. A full map forgets an arbitrary entry for each new one.
type MemoryStore struct {
	mu       sync.Mutex
	triplets map[string]Entry
	clients  map[string]ClientEntry
	sweepAt  int64
	max      int
}

// maxMemoryEntries bounds each map of a MemoryStore (about 150 bytes an entry).
const maxMemoryEntries = 1_000_000

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{triplets: map[string]Entry{}, clients: map[string]ClientEntry{}, max: maxMemoryEntries}
}

// Triplet implements Store.
func (m *MemoryStore) Triplet(ctx context.Context, key string, now int64, p Params) (Entry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now, p)
	e, ok := m.triplets[key]
	next, passed := Step(e, ok, now, p)
	evict.MakeRoom(m.triplets, key, m.max)
	m.triplets[key] = next
	return next, passed, nil
}

// sweep drops what postgrey's maintenance would, at most once an hour of the store's clock.
func (m *MemoryStore) sweep(now int64, p Params) {
	if now < m.sweepAt {
		return
	}
	m.sweepAt = now + 3600
	for k, e := range m.triplets {
		if now-e.Last > p.MaxAge || (e.Last-e.First < p.Delay && now-e.Last > p.RetryWindow) {
			delete(m.triplets, k)
		}
	}
	for k, c := range m.clients {
		if now-c.Last > p.MaxAge {
			delete(m.clients, k)
		}
	}
}

// ClientAllowed implements Store.
func (m *MemoryStore) ClientAllowed(ctx context.Context, key string, now, threshold int64, p Params) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[key]
	allowed, next, changed := ClientCheck(c, ok, now, threshold, p)
	if changed {
		evict.MakeRoom(m.clients, key, m.max)
		m.clients[key] = next
	}
	return allowed, nil
}

// ClientPassed implements Store.
func (m *MemoryStore) ClientPassed(ctx context.Context, key string, now int64, p Params) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[key]
	if next, changed := ClientPass(c, ok, now, p); changed {
		evict.MakeRoom(m.clients, key, m.max)
		m.clients[key] = next
	}
	return nil
}

// Close implements Store.
func (m *MemoryStore) Close() error { return nil }
