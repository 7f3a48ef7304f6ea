package sieve

import (
	"bytes"
	"hash/maphash"
	"sync"
)

// Cache holds compiled scripts keyed by a hash of their source (checked byte for byte
// on a hit), so a delivery that runs the same script for many messages compiles it
// once. Included scripts are read when the including script is compiled: call Reset
// after a global script changes.
type Cache struct {
	opt  Options
	max  int
	seed maphash.Seed
	mu   sync.Mutex
	m    map[uint64]cacheEntry
}

type cacheEntry struct {
	src    []byte
	script *Script
}

// NewCache returns a cache compiling with opt and holding at most max scripts (0 for
// 1024); when full it is emptied, which keeps it simple and bounded.
func NewCache(opt Options, max int) *Cache {
	if max <= 0 {
		max = 1024
	}
	return &Cache{opt: opt, max: max, seed: maphash.MakeSeed(), m: map[uint64]cacheEntry{}}
}

// Compile returns the compiled script for src, compiling it on a miss. Failed
// compilations are not cached.
func (c *Cache) Compile(src []byte) (*Script, error) {
	key := maphash.Bytes(c.seed, src)
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && bytes.Equal(e.src, src) {
		return e.script, nil
	}
	s, err := Compile(src, c.opt)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[key] = cacheEntry{src: bytes.Clone(src), script: s}
	c.mu.Unlock()
	return s, nil
}

// Reset empties the cache.
func (c *Cache) Reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
