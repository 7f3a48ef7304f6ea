package dnstest_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

func zone() dnstest.Zone {
	return dnstest.Zone{
		"example.test.":          {"SOA ns.example.test. host.example.test. 1 3600 600 86400 60", "A 192.0.2.1", `TXT "v=spf1 " "-all"`, "MX 20 mx2.example.test.", "MX 10 mx1.example.test."},
		"www.example.test":       {"CNAME web.example.test."},
		"web.example.test.":      {"A 192.0.2.80", "AAAA 2001:db8::80"},
		"a.b.example.test.":      {"A 192.0.2.3"}, // b.example.test. is an empty non-terminal
		"*.wild.example.test":    {"A 192.0.2.99", "TXT wildcard"},
		"wild.example.test.":     {"TXT apex"},
		"loop1.example.test.":    {"CNAME loop2.example.test."},
		"loop2.example.test.":    {"CNAME loop1.example.test."},
		"dangling.example.test.": {"CNAME nowhere.example.test."},
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestAnswers(t *testing.T) {
	srv := dnstest.New(t, zone())
	r := srv.Resolver()
	c := ctx(t)

	txt, err := dnsx.LookupTXT(c, r, "EXAMPLE.test")
	if err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
		t.Fatalf("TXT = %q, %v", txt, err)
	}
	mx, err := dnsx.LookupMX(c, r, "example.test")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.example.test" || mx[1].Pref != 20 {
		t.Fatalf("MX = %v, %v", mx, err)
	}
	ips, err := dnsx.LookupIP(c, r, "www.example.test")
	if err != nil || fmt.Sprint(ips) != "[192.0.2.80 2001:db8::80]" {
		t.Fatalf("IP via CNAME = %v, %v", ips, err)
	}

	// NODATA: the name exists without AAAA records; the SOA comes along.
	ans, err := r.Query(c, "example.test.", dns.TypeAAAA)
	if err != nil || len(ans.Records) != 0 || ans.SOA == nil || ans.SOA.Minttl != 60 {
		t.Fatalf("NODATA = %+v, %v", ans, err)
	}
	// An empty non-terminal is NODATA, not NXDOMAIN.
	if ans, err := r.Query(c, "b.example.test.", dns.TypeA); err != nil || len(ans.Records) != 0 {
		t.Fatalf("empty non-terminal = %+v, %v", ans, err)
	}
	// NXDOMAIN carries the SOA for negative caching.
	_, err = r.Query(c, "nope.example.test.", dns.TypeA)
	var qe *dnsx.QueryError
	if !dnsx.IsNotFound(err) || !errors.As(err, &qe) || qe.SOA == nil {
		t.Fatalf("NXDOMAIN = %v", err)
	}
	// A CNAME to a missing name is NXDOMAIN (RFC 6604).
	if _, err := r.Query(c, "dangling.example.test.", dns.TypeA); !dnsx.IsNotFound(err) {
		t.Fatalf("dangling CNAME = %v", err)
	}
	// A CNAME loop is a permanent error, not a hang.
	if _, err := r.Query(c, "loop1.example.test.", dns.TypeA); err == nil || dnsx.IsTemporary(err) || !errors.Is(err, dnsx.ErrMalformed) {
		t.Fatalf("CNAME loop = %v", err)
	}
}

func TestWildcard(t *testing.T) {
	srv := dnstest.New(t, zone())
	r := srv.Resolver()
	c := ctx(t)
	a, err := dnsx.LookupA(c, r, "x.y.wild.example.test")
	if err != nil || len(a) != 1 || a[0] != netip.MustParseAddr("192.0.2.99") {
		t.Fatalf("wildcard A = %v, %v", a, err)
	}
	ans, _ := r.Query(c, "x.wild.example.test", dns.TypeTXT)
	if len(ans.Records) != 1 || ans.Records[0].Header().Name != "x.wild.example.test." {
		t.Fatalf("wildcard owner = %v", ans.Records)
	}
	// The apex itself is not covered by its wildcard.
	if txt, _ := dnsx.LookupTXT(c, r, "wild.example.test"); len(txt) != 1 || txt[0] != "apex" {
		t.Fatalf("apex TXT = %v", txt)
	}
	// A wildcard does not reach across an existing name (RFC 4592 §2.2.1): a.b exists, so
	// z.b has closest encloser b.example.test., which has no wildcard.
	if _, err := r.Query(c, "z.b.example.test.", dns.TypeA); !dnsx.IsNotFound(err) {
		t.Fatalf("z.b = %v", err)
	}
}

func TestFaults(t *testing.T) {
	srv := dnstest.New(t, zone())
	r := srv.Resolver()
	c := ctx(t)

	srv.Fail("example.test", dnstest.ServFail)
	if _, err := r.Query(c, "example.test", dns.TypeA); !dnsx.IsTemporary(err) {
		t.Fatalf("SERVFAIL = %v", err)
	}
	srv.Fail("example.test", dnstest.Refused)
	if _, err := r.Query(c, "example.test", dns.TypeA); err == nil || dnsx.IsTemporary(err) || dnsx.IsNotFound(err) {
		t.Fatalf("REFUSED = %v", err)
	} else if !strings.Contains(err.Error(), "REFUSED") {
		t.Fatalf("REFUSED message = %v", err)
	}
	srv.Fail("example.test", dnstest.Malformed)
	if _, err := r.Query(c, "example.test", dns.TypeA); !errors.Is(err, dnsx.ErrMalformed) {
		t.Fatalf("malformed = %v", err)
	}
	srv.Fail("example.test", dnstest.Timeout)
	start := time.Now()
	if _, err := r.Query(c, "example.test", dns.TypeA); !dnsx.IsTemporary(err) {
		t.Fatalf("timeout = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	srv.Fail("example.test", dnstest.NoFault)

	// Truncation: the client retries over TCP and gets the answer.
	srv.Fail("web.example.test", dnstest.Truncate)
	before := srv.TCPQueries()
	if a, err := dnsx.LookupA(c, r, "web.example.test"); err != nil || len(a) != 1 {
		t.Fatalf("truncated = %v, %v", a, err)
	}
	if srv.TCPQueries() != before+1 {
		t.Fatalf("no TCP retry after truncation")
	}

	// The wildcard fault applies to names without their own.
	srv.Fail("*", dnstest.ServFail)
	if _, err := r.Query(c, "example.test", dns.TypeMX); !dnsx.IsTemporary(err) {
		t.Fatalf("* SERVFAIL = %v", err)
	}
	srv.Fail("*", dnstest.NoFault)
}

func TestLargeAnswerGoesTCP(t *testing.T) {
	srv := dnstest.New(t)
	var recs []string
	for i := range 40 {
		recs = append(recs, fmt.Sprintf(`TXT "%s-%02d"`, strings.Repeat("x", 200), i))
	}
	srv.Set("big.test", recs...)
	// Without EDNS0 the 512-octet limit forces TCP.
	r := srv.ResolverWith(dnsx.ClientConfig{Timeout: time.Second, Attempts: 1, NoEDNS0: true})
	txt, err := dnsx.LookupTXT(ctx(t), r, "big.test")
	if err != nil || len(txt) != 40 {
		t.Fatalf("big TXT: %d records, %v", len(txt), err)
	}
	if srv.TCPQueries() == 0 {
		t.Fatal("expected a TCP retry")
	}
}

func TestDelayAndCounts(t *testing.T) {
	srv := dnstest.New(t, zone())
	r := srv.Resolver()
	srv.Delay("*", 50*time.Millisecond)
	start := time.Now()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := dnsx.LookupA(ctx(t), r, "web.example.test"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Fatalf("5 concurrent delayed queries took %v", d)
	}
	if n := srv.QueriesFor("WEB.example.test", dns.TypeA); n != 5 {
		t.Fatalf("QueriesFor = %d", n)
	}
	if srv.Queries() != 5 {
		t.Fatalf("Queries = %d", srv.Queries())
	}
	// A delay longer than the client timeout is a timeout.
	srv.Delay("web.example.test", time.Second)
	if _, err := dnsx.LookupA(ctx(t), r, "web.example.test"); !dnsx.IsTemporary(err) {
		t.Fatalf("slow = %v", err)
	}
}

func TestSetLoadZoneAndNetResolver(t *testing.T) {
	srv := dnstest.New(t)
	srv.LoadZone("zone.test", `$TTL 60
@        IN SOA ns hostmaster 1 3600 600 86400 30
@        IN TXT "hello world"
mail     IN A 198.51.100.7
`)
	c := ctx(t)
	ips, err := srv.NetResolver().LookupHost(c, "mail.zone.test")
	if err != nil || len(ips) != 1 || ips[0] != "198.51.100.7" {
		t.Fatalf("net.Resolver = %v, %v", ips, err)
	}
	r := srv.Resolver()
	srv.Set("mail.zone.test", "A 198.51.100.8")
	if a, _ := dnsx.LookupA(c, r, "mail.zone.test"); len(a) != 1 || a[0].String() != "198.51.100.8" {
		t.Fatalf("after Set: %v", a)
	}
	srv.Set("mail.zone.test")
	if _, err := dnsx.LookupA(c, r, "mail.zone.test"); !dnsx.IsNotFound(err) {
		t.Fatalf("after removal: %v", err)
	}
}

func TestReverseAndFCrDNS(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.25")
	v6 := netip.MustParseAddr("2001:db8::25")
	srv := dnstest.New(t, dnstest.Zone{
		dnsx.ReverseName(v4): {"PTR liar.test.", "PTR mail.good.test."},
		dnsx.ReverseName(v6): {"PTR mail.good.test."},
		"mail.good.test":     {"A 192.0.2.25", "AAAA 2001:db8::25"},
		"liar.test":          {"A 192.0.2.26"},
	})
	if got := dnsx.ReverseName(v4); got != "25.2.0.192.in-addr.arpa." {
		t.Fatal(got)
	}
	if got := dnsx.ReverseName(v6); !strings.HasPrefix(got, "5.2.0.0.0.0.") || !strings.HasSuffix(got, "8.b.d.0.1.0.0.2.ip6.arpa.") {
		t.Fatal(got)
	}
	r := srv.Resolver()
	for _, ip := range []netip.Addr{v4, v6, netip.AddrFrom16(v4.As16())} {
		host, ptrs, err := dnsx.ForwardConfirmed(ctx(t), r, ip)
		if err != nil || host != "mail.good.test" || len(ptrs) == 0 {
			t.Fatalf("FCrDNS %s = %q %v %v", ip, host, ptrs, err)
		}
	}
	host, ptrs, err := dnsx.ForwardConfirmed(ctx(t), r, netip.MustParseAddr("192.0.2.99"))
	if err != nil || host != "" || ptrs != nil {
		t.Fatalf("no PTR = %q %v %v", host, ptrs, err)
	}
	srv.Fail("mail.good.test", dnstest.ServFail)
	host, _, err = dnsx.ForwardConfirmed(ctx(t), r, v4)
	if host != "" || !dnsx.IsTemporary(err) {
		t.Fatalf("temp failure = %q %v", host, err)
	}
}

// TestConcurrentChanges changes zones, faults and delays while queries are in flight
// (run with -race).
func TestConcurrentChanges(t *testing.T) {
	srv := dnstest.New(t, zone())
	r := srv.Resolver()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 25 {
				name := fmt.Sprintf("n%d.example.test", j%5)
				switch (i + j) % 4 {
				case 0:
					srv.Set(name, fmt.Sprintf("A 192.0.2.%d", j))
				case 1:
					srv.Fail(name, dnstest.Truncate)
				case 2:
					srv.Delay(name, time.Millisecond)
				default:
					srv.Fail(name, dnstest.NoFault)
				}
				r.Query(ctx(t), name, dns.TypeA)
			}
		})
	}
	wg.Wait()
	if srv.Queries() < 100 {
		t.Fatalf("queries = %d", srv.Queries())
	}
}
