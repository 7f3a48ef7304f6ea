package directory

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// Cache remembers a directory's answers (users and ErrNotFound) for a TTL, so that a
// busy proxy asks PostgreSQL or LDAP once per user every few seconds; errors are never
// remembered. A change in the directory is seen within the TTL. It is safe for
// concurrent use; the Users it returns share their Aliases slice, which callers must not
// modify.
type Cache struct {
	next Directory
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	u     User
	found bool
	exp   time.Time
}

// NewCache puts a cache of at most entries answers (default 100000) for ttl in front of
// d.
func NewCache(d Directory, ttl time.Duration, entries int) *Cache {
	if entries <= 0 {
		entries = 100000
	}
	return &Cache{next: d, ttl: ttl, max: entries, now: time.Now, entries: map[string]cacheEntry{}}
}

// Lookup implements Directory.
func (c *Cache) Lookup(ctx context.Context, addr string) (User, error) {
	key := strings.ToLower(addr)
	now := c.now()
	c.mu.Lock()
	e, hit := c.entries[key]
	c.mu.Unlock()
	if hit && now.Before(e.exp) {
		if !e.found {
			return User{}, notFound(addr)
		}
		return e.u, nil
	}
	u, err := c.next.Lookup(ctx, addr)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, err
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		// Crude but bounded: drop the expired ones, and everything if that was not enough.
		for k, e := range c.entries {
			if !now.Before(e.exp) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			c.entries = map[string]cacheEntry{}
		}
	}
	c.entries[key] = cacheEntry{u: u, found: err == nil, exp: now.Add(c.ttl)}
	c.mu.Unlock()
	return u, err
}
