package dnsx_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

// clock is a manual clock for cache tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1_800_000_000, 0)} }
func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func newCache(t testing.TB, up dnsx.Resolver, cfg dnsx.CacheConfig) *dnsx.Cache {
	c, err := dnsx.NewCache(up, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCacheHonoursTTL(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"a.test.": {"60 A 192.0.2.1", "30 A 192.0.2.2"},
		"test.":   {"SOA ns.test. host.test. 1 3600 600 86400 20"},
	})
	clk := newClock()
	c := newCache(t, srv.Resolver(), dnsx.CacheConfig{Now: clk.Now})
	ctx := tctx(t)
	for range 3 {
		if a, err := dnsx.LookupA(ctx, c, "A.test"); err != nil || len(a) != 2 {
			t.Fatalf("A = %v, %v", a, err)
		}
	}
	if n := srv.QueriesFor("a.test", dns.TypeA); n != 1 {
		t.Fatalf("upstream queries = %d, want 1", n)
	}
	clk.Add(29 * time.Second)
	dnsx.LookupA(ctx, c, "a.test")
	if n := srv.QueriesFor("a.test", dns.TypeA); n != 1 {
		t.Fatalf("asked again before the smallest TTL (30s) ran out")
	}
	clk.Add(2 * time.Second)
	dnsx.LookupA(ctx, c, "a.test")
	if n := srv.QueriesFor("a.test", dns.TypeA); n != 2 {
		t.Fatalf("not asked again after the TTL: %d", n)
	}

	// Negative caching from the SOA minimum (20 s), for NXDOMAIN and NODATA alike.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"missing.test.", dns.TypeA}, {"a.test.", dns.TypeTXT}} {
		for range 2 {
			c.Query(ctx, q.name, q.qtype)
		}
		if n := srv.QueriesFor(q.name, q.qtype); n != 1 {
			t.Fatalf("%s: negative answer not cached: %d", q.name, n)
		}
		clk.Add(21 * time.Second)
		_, err := c.Query(ctx, q.name, q.qtype)
		if n := srv.QueriesFor(q.name, q.qtype); n != 2 {
			t.Fatalf("%s: negative answer kept past the SOA minimum: %d", q.name, n)
		}
		if q.qtype == dns.TypeA && !dnsx.IsNotFound(err) {
			t.Fatalf("cached NXDOMAIN = %v", err)
		}
	}
}

func TestCacheNegativeWithoutSOA(t *testing.T) {
	srv := dnstest.New(t)
	clk := newClock()
	c := newCache(t, srv.Resolver(), dnsx.CacheConfig{Now: clk.Now, NegativeTTL: 10 * time.Second})
	ctx := tctx(t)
	c.Query(ctx, "x.test", dns.TypeA)
	clk.Add(9 * time.Second)
	c.Query(ctx, "x.test", dns.TypeA)
	clk.Add(2 * time.Second)
	c.Query(ctx, "x.test", dns.TypeA)
	if n := srv.QueriesFor("x.test", dns.TypeA); n != 2 {
		t.Fatalf("queries = %d, want 2", n)
	}
}

func TestCacheErrors(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	clk := newClock()
	ctx := tctx(t)
	srv.Fail("a.test", dnstest.ServFail)

	nocache := newCache(t, srv.Resolver(), dnsx.CacheConfig{Now: clk.Now})
	for range 2 {
		if _, err := nocache.Query(ctx, "a.test", dns.TypeA); !dnsx.IsTemporary(err) {
			t.Fatal(err)
		}
	}
	if n := srv.QueriesFor("a.test", dns.TypeA); n != 2 {
		t.Fatalf("SERVFAIL cached without ErrorTTL: %d queries", n)
	}

	brief := newCache(t, srv.Resolver(), dnsx.CacheConfig{Now: clk.Now, ErrorTTL: 5 * time.Second})
	for range 2 {
		if _, err := brief.Query(ctx, "a.test", dns.TypeA); !dnsx.IsTemporary(err) {
			t.Fatal(err)
		}
	}
	if n := srv.QueriesFor("a.test", dns.TypeA); n != 3 {
		t.Fatalf("SERVFAIL not cached for ErrorTTL: %d queries", n)
	}
	clk.Add(6 * time.Second)
	srv.Fail("a.test", dnstest.NoFault)
	if _, err := brief.Query(ctx, "a.test", dns.TypeA); err != nil {
		t.Fatalf("after ErrorTTL: %v", err)
	}

	// A caller whose context ends gets a temporary error at once; the upstream query goes
	// on for the others and its answer is cached.
	slow := newCache(t, srv.ResolverWith(dnsx.ClientConfig{Timeout: 5 * time.Second, Attempts: 1}), dnsx.CacheConfig{Now: clk.Now})
	srv.Delay("slow.test", 500*time.Millisecond)
	srv.Set("slow.test", "A 192.0.2.9")
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := slow.Query(short, "slow.test", dns.TypeA); !dnsx.IsTemporary(err) {
		t.Fatalf("short deadline = %v", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("the caller waited %v for a 500 ms answer past its 20 ms deadline", d)
	}
	if _, err := slow.Query(ctx, "slow.test", dns.TypeA); err != nil {
		t.Fatalf("second caller: %v", err)
	}
	if n := srv.QueriesFor("slow.test", dns.TypeA); n != 1 {
		t.Fatalf("upstream queries = %d, want 1", n)
	}
}

func TestCacheBoundedLRU(t *testing.T) {
	srv := dnstest.New(t)
	for i := range 10 {
		srv.Set(fmt.Sprintf("h%d.test", i), "A 192.0.2.1")
	}
	c := newCache(t, srv.Resolver(), dnsx.CacheConfig{MaxEntries: 4})
	ctx := tctx(t)
	for i := range 10 {
		dnsx.LookupA(ctx, c, fmt.Sprintf("h%d.test", i))
		dnsx.LookupA(ctx, c, "h0.test") // keep h0 recently used
	}
	if s := c.Stats(); s.Entries != 4 {
		t.Fatalf("entries = %d, want 4", s.Entries)
	}
	if n := srv.QueriesFor("h0.test", dns.TypeA); n != 1 {
		t.Fatalf("the most recently used entry was evicted: %d queries", n)
	}
	dnsx.LookupA(ctx, c, "h1.test")
	if n := srv.QueriesFor("h1.test", dns.TypeA); n != 2 {
		t.Fatalf("the least recently used entry was kept: %d queries", n)
	}
}

func TestCacheCollapsesConcurrentQueries(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	srv.Delay("a.test", 100*time.Millisecond)
	// A generous client timeout: the one upstream query is delayed on purpose, and on a
	// loaded machine 100 ms of delay must not meet the default 300 ms timeout.
	c := newCache(t, srv.ResolverWith(dnsx.ClientConfig{Timeout: 5 * time.Second, Attempts: 1}), dnsx.CacheConfig{})
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 20 {
		wg.Go(func() {
			if a, err := dnsx.LookupA(tctx(t), c, "a.test"); err == nil && len(a) == 1 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 20 {
		t.Fatalf("%d of 20 callers got the answer", ok.Load())
	}
	if n := srv.Queries(); n != 1 {
		t.Fatalf("upstream queries = %d, want 1", n)
	}
}

func TestCacheConfigErrors(t *testing.T) {
	if _, err := dnsx.NewCache(nil, dnsx.CacheConfig{}); err == nil {
		t.Fatal("nil upstream accepted")
	}
	srv := dnstest.New(t)
	if _, err := dnsx.NewCache(srv.Resolver(), dnsx.CacheConfig{MinTTL: time.Hour, MaxTTL: time.Minute}); err == nil {
		t.Fatal("min_ttl > max_ttl accepted")
	}
}

// warmCache returns a cache that holds the answer for a.test. A, for the hit benchmarks.
func warmCache(b *testing.B) (*dnsx.Cache, context.Context) {
	srv := dnstest.New(b, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	c := newCache(b, srv.Resolver(), dnsx.CacheConfig{})
	ctx := context.Background()
	if _, err := c.Query(ctx, "a.test.", dns.TypeA); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	return c, ctx
}

func BenchmarkCacheHit(b *testing.B) {
	c, ctx := warmCache(b)
	for b.Loop() {
		if _, err := c.Query(ctx, "a.test.", dns.TypeA); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheHitParallel(b *testing.B) {
	c, ctx := warmCache(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Query(ctx, "a.test.", dns.TypeA); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
