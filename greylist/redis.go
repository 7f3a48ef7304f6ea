package greylist

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps the state in Redis, shared by several front-ends. Each step is one Lua
// script, so that concurrent attempts of one triplet from two front-ends never lose an
// update; keys expire after max_age.
type RedisStore struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedisStore uses c (whose timeouts bound every call), with keys under prefix
// ("portcullis:greylist:" when empty).
func NewRedisStore(c redis.UniversalClient, prefix string) *RedisStore {
	if prefix == "" {
		prefix = "portcullis:greylist:"
	}
	return &RedisStore{c: c, prefix: prefix}
}

// tripletScript is Step: KEYS[1] the triplet; ARGV now, delay, retry window, max age.
// It returns {first, last, passed before}.
var tripletScript = redis.NewScript(`
local now, delay, retry, maxage = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local first, passed = now, 0
local v = redis.call('GET', KEYS[1])
if v then
  local f, l = string.match(v, '^(%-?%d+),(%-?%d+)$')
  f, l = tonumber(f), tonumber(l)
  if f and l and now - l <= maxage then
    first = f
    if l - f >= delay then
      passed = 1
    elseif now - first > retry then
      first = now
    end
    if first > now then first = now end
  end
end
redis.call('SET', KEYS[1], first .. ',' .. now, 'EX', maxage)
return {first, now, passed}
`)

// clientScript is ClientCheck (ARGV[4] == "check") or ClientPass ("pass"): KEYS[1] the
// client; ARGV now, threshold, max age, mode, interval. It returns 1 when allowed (check).
var clientScript = redis.NewScript(`
local now, threshold, maxage, mode, every = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local count, last
local v = redis.call('GET', KEYS[1])
if v then
  local c, l = string.match(v, '^(%-?%d+),(%-?%d+)$')
  count, last = tonumber(c), tonumber(l)
  if count and last and now - last > maxage then count = nil end
end
if mode == 'check' then
  if not count or threshold <= 0 or count < threshold then return 0 end
  if now >= last + every or last > now then
    redis.call('SET', KEYS[1], (count + 1) .. ',' .. now, 'EX', maxage)
  end
  return 1
end
if not count then
  redis.call('SET', KEYS[1], '1,' .. now, 'EX', maxage)
elseif now >= last + every then
  redis.call('SET', KEYS[1], (count + 1) .. ',' .. now, 'EX', maxage)
end
return 0
`)

// Triplet implements Store.
func (r *RedisStore) Triplet(ctx context.Context, key string, now int64, p Params) (Entry, bool, error) {
	res, err := tripletScript.Run(ctx, r.c, []string{r.prefix + "t:" + key}, now, p.Delay, p.RetryWindow, max(p.MaxAge, 1)).Int64Slice()
	if err != nil {
		return Entry{}, false, fmt.Errorf("greylist: redis: %w", err)
	}
	if len(res) != 3 {
		return Entry{}, false, fmt.Errorf("greylist: redis: unexpected reply %v", res)
	}
	return Entry{First: res[0], Last: res[1]}, res[2] == 1, nil
}

// ClientAllowed implements Store.
func (r *RedisStore) ClientAllowed(ctx context.Context, key string, now, threshold int64, p Params) (bool, error) {
	n, err := clientScript.Run(ctx, r.c, []string{r.prefix + "c:" + key}, now, threshold, max(p.MaxAge, 1), "check", p.AutoAllowInterval).Int64()
	if err != nil {
		return false, fmt.Errorf("greylist: redis: %w", err)
	}
	return n == 1, nil
}

// ClientPassed implements Store.
func (r *RedisStore) ClientPassed(ctx context.Context, key string, now int64, p Params) error {
	if err := clientScript.Run(ctx, r.c, []string{r.prefix + "c:" + key}, now, 0, max(p.MaxAge, 1), "pass", p.AutoAllowInterval).Err(); err != nil {
		return fmt.Errorf("greylist: redis: %w", err)
	}
	return nil
}

// Close implements Store. The client belongs to the caller.
func (r *RedisStore) Close() error { return nil }
