package dnsx

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// CacheConfig configures a Cache.
type CacheConfig struct {
	// MaxEntries bounds the number of cached answers; the least recently used goes first
	// (default 10000).
	MaxEntries int `yaml:"max_entries"`
	// MinTTL raises shorter TTLs (default 0: honour them).
	MinTTL time.Duration `yaml:"min_ttl"`
	// MaxTTL caps longer TTLs (default 1h).
	MaxTTL time.Duration `yaml:"max_ttl"`
	// NegativeTTL is how long NXDOMAIN and NODATA answers are kept when the server sent no
	// SOA to take it from (RFC 2308 §5), and the cap on the SOA's value (default 5m).
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// ErrorTTL is how long other failures (SERVFAIL, timeouts, REFUSED) are kept, so that
	// a broken zone is not asked again for every message; 0 does not cache them. A
	// cancelled or expired context of the caller is never cached.
	ErrorTTL time.Duration `yaml:"error_ttl"`
	// QueryTimeout bounds one upstream query, whoever waits for it (default 30s; the
	// upstream client's own timeouts normally end it much sooner).
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// Now returns the current time (default time.Now); tests set it.
	Now func() time.Time `yaml:"-"`
}

// Cache is a Resolver that remembers the answers of another one for their TTL (the
// smallest TTL of the answer's records), remembers NXDOMAIN and NODATA for the SOA's
// negative TTL (RFC 2308 §5), holds at most MaxEntries answers, and merges concurrent
// identical queries into one upstream query. It is safe for concurrent use.
//
// Cached answers are shared between callers: treat an Answer and its records as read-only.
// TTLs in the records are those received, not decremented.
type Cache struct {
	up  Resolver
	cfg CacheConfig
	now func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*list.Element
	lru     list.List // of *cacheEntry, most recent first
	hits    uint64
	misses  uint64

	group singleflight.Group
}

type cacheKey struct {
	name  string // canonical (lower case, fully qualified)
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	ans     *Answer
	err     error
	expires time.Time
}

// NewCache returns a cache in front of upstream.
func NewCache(upstream Resolver, cfg CacheConfig) (*Cache, error) {
	if upstream == nil {
		return nil, errors.New("dnsx: cache without an upstream resolver")
	}
	if cfg.MaxEntries < 0 || cfg.MinTTL < 0 || cfg.MaxTTL < 0 || cfg.NegativeTTL < 0 || cfg.ErrorTTL < 0 || cfg.QueryTimeout < 0 {
		return nil, errors.New("dnsx: negative value in cache config")
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 5 * time.Minute
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 30 * time.Second
	}
	if cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("dnsx: cache min_ttl %v is above max_ttl %v", cfg.MinTTL, cfg.MaxTTL)
	}
	c := &Cache{up: upstream, cfg: cfg, now: cfg.Now, entries: make(map[cacheKey]*list.Element)}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// CacheStats are counters of a cache.
type CacheStats struct {
	Entries int
	Hits    uint64
	Misses  uint64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: c.lru.Len(), Hits: c.hits, Misses: c.misses}
}

// Query implements Resolver.
func (c *Cache) Query(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	key := cacheKey{name: canonical(name), qtype: qtype}
	now := c.now()
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.hits++
			c.mu.Unlock()
			return e.ans, e.err
		}
		c.lru.Remove(el)
		delete(c.entries, key)
	}
	c.misses++
	c.mu.Unlock()

	// One upstream query for all concurrent callers. It runs detached from the callers'
	// contexts (a caller that gives up must not fail the others, and the answer is worth
	// caching anyway), bounded by the upstream's own timeouts and QueryTimeout; each caller
	// waits only as long as its own context allows.
	ch := c.group.DoChan(key.name+"\x00"+fmt.Sprint(qtype), func() (any, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.QueryTimeout)
		defer cancel()
		ans, err := c.up.Query(qctx, key.name, qtype)
		if err == nil || qctx.Err() == nil {
			// A failure after QueryTimeout says nothing certain about the server.
			c.store(key, ans, err)
		}
		return ans, err
	})
	select {
	case res := <-ch:
		ans, _ := res.Val.(*Answer)
		return ans, res.Err
	case <-ctx.Done():
		return nil, &QueryError{Name: key.name, Type: qtype, Rcode: -1, Kind: ErrTemporary, Err: ctx.Err()}
	}
}

// store caches one result for its TTL.
func (c *Cache) store(key cacheKey, ans *Answer, err error) {
	ttl, ok := c.ttl(ans, err)
	if !ok || ttl <= 0 {
		return
	}
	e := &cacheEntry{key: key, ans: ans, err: err, expires: c.now().Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.entries[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.cfg.MaxEntries {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
	}
}

// ttl decides how long a result is kept and whether it may be kept at all.
func (c *Cache) ttl(ans *Answer, err error) (time.Duration, bool) {
	if err != nil {
		var qe *QueryError
		if errors.Is(err, ErrNXDomain) {
			if errors.As(err, &qe) && qe.SOA != nil {
				return c.negative(qe.SOA), true
			}
			return c.cfg.NegativeTTL, true
		}
		return c.cfg.ErrorTTL, c.cfg.ErrorTTL > 0
	}
	if ans == nil {
		return 0, false
	}
	if len(ans.Records) == 0 { // NODATA
		if ans.SOA != nil {
			return c.negative(ans.SOA), true
		}
		return c.cfg.NegativeTTL, true
	}
	ttl := uint32(1<<31 - 1)
	for _, rr := range ans.Records {
		ttl = min(ttl, rr.Header().Ttl)
	}
	return c.clamp(time.Duration(ttl) * time.Second), true
}

// negative returns the negative TTL of an SOA: the smaller of its TTL and its minimum
// field (RFC 2308 §5), capped by NegativeTTL.
func (c *Cache) negative(soa *dns.SOA) time.Duration {
	d := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
	return min(max(d, c.cfg.MinTTL), c.cfg.NegativeTTL)
}

func (c *Cache) clamp(d time.Duration) time.Duration {
	return min(max(d, c.cfg.MinTTL), c.cfg.MaxTTL)
}

// canonical lower-cases name and makes it fully qualified, without allocating when it
// already is.
func canonical(name string) string {
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}
