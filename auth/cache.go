package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// Defaults of DBConfig.VerifyCacheTTL and VerifyCacheEntries.
const (
	DefaultVerifyCacheTTL     = time.Hour
	DefaultVerifyCacheEntries = 100000
)

// verifyCache remembers successful password verifications (DBConfig.VerifyCacheTTL).
// Keys are HMAC-SHA256 under a per-process random key of the address, the stored hash
// and the password, so a changed hash or password never hits: a password changed or a
// user deleted (by this process or another) leaves its entries unreachable, and they
// go when they expire or are evicted. Values are expiry times only.
type verifyCache struct {
	key  []byte
	ttl  time.Duration
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]time.Time // expiry
}

func newVerifyCache(ttl time.Duration, size int) *verifyCache {
	if size <= 0 {
		size = DefaultVerifyCacheEntries
	}
	key := make([]byte, 32)
	rand.Read(key)
	return &verifyCache{key: key, ttl: ttl, size: size, now: time.Now, entries: make(map[[sha256.Size]byte]time.Time)}
}

func (c *verifyCache) mac(addr, stored, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.key)
	for _, s := range []string{addr, stored, password} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

func (c *verifyCache) hit(addr, stored, password string) bool {
	k := c.mac(addr, stored, password)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.entries[k]
	if ok && now.After(exp) {
		delete(c.entries, k)
		return false
	}
	return ok
}

func (c *verifyCache) add(addr, stored, password string) {
	k := c.mac(addr, stored, password)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		// Drop expired entries, then arbitrary ones (map order) until there is room.
		for key, exp := range c.entries {
			if now.After(exp) || len(c.entries) >= c.size {
				delete(c.entries, key)
			}
		}
	}
	c.entries[k] = now.Add(c.ttl)
}
