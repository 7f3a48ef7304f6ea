package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mail/portcullis/internal/evict"
)

// Counter keeps windowed counts. Implementations are safe for concurrent use.
type Counter interface {
	// Incr counts one event of key in its window, which starts at the key's first event
	// and lasts window, and returns the count in the window.
	Incr(ctx context.Context, key string, window time.Duration) (int64, error)
	// FirstTime adds member to the set key, which is kept for keep after its last
	// addition, and reports whether member was not in it.
	FirstTime(ctx context.Context, key, member string, keep time.Duration) (bool, error)
	// Forget removes member from the set key (a first-time recipient that was refused
	// stays new).
	Forget(ctx context.Context, key, member string) error
}

// MemoryCounter keeps the counts in memory (lost on restart, as anvil's). It holds at
// most maxKeys windows and as many sets: a flood from many addresses, each with a window
// of its own, would otherwise grow it without end until the windows end. A full map
// forgets an arbitrary key for each new one (that key's count starts again).
type MemoryCounter struct {
	mu      sync.Mutex
	windows map[string]*window
	sets    map[string]*set
	now     func() time.Time
	sweepAt time.Time
	maxKeys int
}

// maxKeys bounds the windows and the sets of a MemoryCounter.
const maxKeys = 1_000_000

type window struct {
	end time.Time
	n   int64
}

type set struct {
	end     time.Time
	members map[string]struct{}
}

// maxSetMembers bounds one set in memory (a user's known recipients).
const maxSetMembers = 100000

// NewMemoryCounter returns an empty in-memory counter; now is its clock (nil: time.Now).
func NewMemoryCounter(now func() time.Time) *MemoryCounter {
	if now == nil {
		now = time.Now
	}
	return &MemoryCounter{windows: map[string]*window{}, sets: map[string]*set{}, now: now, maxKeys: maxKeys}
}

func (m *MemoryCounter) sweep(now time.Time) {
	if now.Before(m.sweepAt) {
		return
	}
	m.sweepAt = now.Add(time.Minute)
	for k, w := range m.windows {
		if !now.Before(w.end) {
			delete(m.windows, k)
		}
	}
	for k, s := range m.sets {
		if !now.Before(s.end) {
			delete(m.sets, k)
		}
	}
}

// Incr implements Counter.
func (m *MemoryCounter) Incr(ctx context.Context, key string, win time.Duration) (int64, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	w := m.windows[key]
	if w == nil || !now.Before(w.end) {
		w = &window{end: now.Add(win)}
		evict.MakeRoom(m.windows, key, m.maxKeys)
		m.windows[key] = w
	}
	w.n++
	return w.n, nil
}

// FirstTime implements Counter.
func (m *MemoryCounter) FirstTime(ctx context.Context, key, member string, keep time.Duration) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	s := m.sets[key]
	if s == nil || !now.Before(s.end) {
		s = &set{members: map[string]struct{}{}}
		evict.MakeRoom(m.sets, key, m.maxKeys)
		m.sets[key] = s
	}
	s.end = now.Add(keep)
	if _, ok := s.members[member]; ok {
		return false, nil
	}
	if len(s.members) < maxSetMembers {
		s.members[member] = struct{}{}
	}
	return true, nil
}

// Forget implements Counter.
func (m *MemoryCounter) Forget(ctx context.Context, key, member string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.sets[key]; s != nil {
		delete(s.members, member)
	}
	return nil
}

// RedisCounter keeps the counts in Redis, shared by several front-ends.
type RedisCounter struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedisCounter uses c (whose timeouts bound every call) with keys under prefix
// ("portcullis:rate:" when empty).
func NewRedisCounter(c redis.UniversalClient, prefix string) *RedisCounter {
	if prefix == "" {
		prefix = "portcullis:rate:"
	}
	return &RedisCounter{c: c, prefix: prefix}
}

// incrScript: the window starts with the first INCR, which sets its expiry.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)

var firstScript = redis.NewScript(`
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return added
`)

// Incr implements Counter.
func (r *RedisCounter) Incr(ctx context.Context, key string, win time.Duration) (int64, error) {
	n, err := incrScript.Run(ctx, r.c, []string{r.prefix + key}, max(win.Milliseconds(), 1)).Int64()
	if err != nil {
		return 0, fmt.Errorf("ratelimit: redis: %w", err)
	}
	return n, nil
}

// FirstTime implements Counter.
func (r *RedisCounter) FirstTime(ctx context.Context, key, member string, keep time.Duration) (bool, error) {
	n, err := firstScript.Run(ctx, r.c, []string{r.prefix + key}, member, max(keep.Milliseconds(), 1)).Int64()
	if err != nil {
		return false, fmt.Errorf("ratelimit: redis: %w", err)
	}
	return n == 1, nil
}

// Forget implements Counter.
func (r *RedisCounter) Forget(ctx context.Context, key, member string) error {
	if err := r.c.SRem(ctx, r.prefix+key, member).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}
