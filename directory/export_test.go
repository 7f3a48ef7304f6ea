package directory

import "time"

func SetCacheClock(c *Cache, now func() time.Time) { c.now = now }

func CacheLen(c *Cache) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
