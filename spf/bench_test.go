package spf

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

// threeIncludes is a record with three includes; the client matches in the last one.
var threeIncludes = dnstest.Zone{
	"example.com.":        {`TXT "v=spf1 include:one.example.com include:two.example.com include:three.example.com -all"`},
	"one.example.com.":    {`TXT "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:1::/48 ~all"`},
	"two.example.com.":    {`TXT "v=spf1 a:mx.two.example.com ~all"`},
	"mx.two.example.com.": {"A 203.0.113.5"},
	"three.example.com.":  {`TXT "v=spf1 ip4:192.0.2.0/24 ~all"`},
}

// BenchmarkThreeIncludes evaluates the record against dnstest over loopback, every query
// going to the server (no cache): 5 DNS round trips per check.
func BenchmarkThreeIncludes(b *testing.B) {
	srv := dnstest.New(b, threeIncludes)
	r := srv.Resolver()
	benchCheck(b, r)
}

// BenchmarkThreeIncludesCached is the same through the shared dnsx cache, as in the
// server: after the first check every answer comes from memory.
func BenchmarkThreeIncludesCached(b *testing.B) {
	srv := dnstest.New(b, threeIncludes)
	c, err := dnsx.NewCache(srv.Resolver(), dnsx.CacheConfig{})
	if err != nil {
		b.Fatal(err)
	}
	benchCheck(b, c)
}

func benchCheck(b *testing.B, r dnsx.Resolver) {
	ip := netip.MustParseAddr("192.0.2.44")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := Check(ctx, r, ip, "mail.example.com", "alice@example.com", WithTimeout(5*time.Second))
		if err != nil || res.Status != Pass {
			b.Fatalf("%s %v", res.Status, err)
		}
	}
}
