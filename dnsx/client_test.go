package dnsx_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

func TestClientFailsOverToNextServer(t *testing.T) {
	bad := dnstest.New(t, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	good := dnstest.New(t, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	for _, f := range []dnstest.Fault{dnstest.Timeout, dnstest.ServFail, dnstest.Refused, dnstest.Malformed} {
		bad.Fail("*", f)
		c, err := dnsx.NewClient(dnsx.ClientConfig{Servers: []string{bad.Addr(), good.Addr()}, Timeout: 100 * time.Millisecond, Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		if a, err := dnsx.LookupA(tctx(t), c, "a.test"); err != nil || len(a) != 1 {
			t.Fatalf("%v at the first server: %v, %v", f, a, err)
		}
	}
}

func TestClientRetriesAndGivesUp(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	srv.Fail("a.test", dnstest.ServFail)
	c := srv.ResolverWith(dnsx.ClientConfig{Timeout: 100 * time.Millisecond, Attempts: 3})
	if _, err := c.Query(tctx(t), "a.test", dns.TypeA); !dnsx.IsTemporary(err) {
		t.Fatalf("SERVFAIL = %v", err)
	}
	if n := srv.QueriesFor("a.test", dns.TypeA); n != 3 {
		t.Fatalf("attempts = %d, want 3", n)
	}
	// REFUSED is not worth asking the same server again.
	srv.Fail("a.test", dnstest.Refused)
	c.Query(tctx(t), "a.test", dns.TypeA)
	if n := srv.QueriesFor("a.test", dns.TypeA); n != 4 {
		t.Fatalf("REFUSED asked %d times, want once", n-3)
	}
}

func TestClientHonoursContext(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	srv.Fail("a.test", dnstest.Timeout)
	c := srv.ResolverWith(dnsx.ClientConfig{Timeout: 5 * time.Second, Attempts: 3})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Query(ctx, "a.test", dns.TypeA)
	if !dnsx.IsTemporary(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled query = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancelled query returned after %v", d)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := c.Query(ctx, "a.test", dns.TypeA); !dnsx.IsTemporary(err) {
		t.Fatalf("expired query = %v", err)
	}
}

func TestClientRejectsBadNames(t *testing.T) {
	srv := dnstest.New(t)
	r := srv.Resolver()
	for _, name := range []string{strings.Repeat("a", 64) + ".test", strings.Repeat("abcdefghi.", 30) + "test", "a..b"} {
		_, err := r.Query(tctx(t), name, dns.TypeA)
		if err == nil || dnsx.IsTemporary(err) || dnsx.IsNotFound(err) {
			t.Errorf("%.30q: %v", name, err)
		}
	}
	if srv.Queries() != 0 {
		t.Fatalf("bad names reached the server")
	}
}

func TestClientNonASCIIAndOddRecords(t *testing.T) {
	srv := dnstest.New(t)
	srv.Set("odd.test", `TXT "caf\195\169" "\000nul"`, "TXT "+strings.Repeat("x", 255))
	txt, err := dnsx.LookupTXT(tctx(t), srv.Resolver(), "odd.test")
	if err != nil || len(txt) != 2 {
		t.Fatalf("TXT = %q, %v", txt, err)
	}
	// Non-ASCII query names go out as raw octets and come back NXDOMAIN.
	if _, err := srv.Resolver().Query(tctx(t), "bücher.test", dns.TypeA); !dnsx.IsNotFound(err) {
		t.Fatalf("non-ASCII name = %v", err)
	}
}

func TestClientResolvConf(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{"a.test": {"A 192.0.2.1"}})
	_, port, _ := strings.Cut(srv.Addr(), ":")
	dir := t.TempDir()
	// resolv.conf has no port syntax; ClientConfigFromFile uses 53. Point it at
	// 127.0.0.1 and check what the client read, then query through explicit servers.
	path := filepath.Join(dir, "resolv.conf")
	os.WriteFile(path, []byte("nameserver 127.0.0.1\nnameserver ::1\noptions timeout:1 attempts:3\n"), 0o644)
	c, err := dnsx.NewClient(dnsx.ClientConfig{ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Servers()
	if err != nil || fmt.Sprint(got) != "[127.0.0.1:53 [::1]:53]" {
		t.Fatalf("servers = %v, %v", got, err)
	}
	missing, _ := dnsx.NewClient(dnsx.ClientConfig{ResolvConf: filepath.Join(dir, "none")})
	if _, err := missing.Query(tctx(t), "a.test", dns.TypeA); err == nil || !strings.Contains(err.Error(), "none") {
		t.Fatalf("missing resolv.conf = %v", err)
	}
	c2, err := dnsx.NewClient(dnsx.ClientConfig{Servers: []string{"127.0.0.1:" + port}})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := dnsx.LookupA(tctx(t), c2, "a.test"); err != nil || len(a) != 1 {
		t.Fatalf("A = %v, %v", a, err)
	}
	for _, size := range []bytesize.Size{100, 64 * bytesize.KiB} {
		if _, err := dnsx.NewClient(dnsx.ClientConfig{UDPSize: size}); err == nil {
			t.Fatalf("udp_size %v accepted", size)
		}
	}
}

func TestReverseLabels(t *testing.T) {
	got := dnsx.ReverseLabels(netip.MustParseAddr("2001:db8::1"))
	want := "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := dnsx.ReverseLabels(netip.MustParseAddr("::ffff:10.1.2.3")); got != "3.2.1.10." {
		t.Fatal(got)
	}
}

func Example() {
	// A DNS server for the example; in production, dnsx.NewClient(dnsx.ClientConfig{})
	// asks the servers of /etc/resolv.conf.
	srv, err := dnstest.Start(dnstest.Zone{
		"example.test.": {"MX 20 backup.example.test.", "MX 10 mx.example.test.", `TXT "v=spf1 " "-all"`},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	client, _ := dnsx.NewClient(dnsx.ClientConfig{Servers: []string{srv.Addr()}, Timeout: time.Second})
	cache, _ := dnsx.NewCache(client, dnsx.CacheConfig{MaxEntries: 1000})

	ctx := context.Background()
	mx, _ := dnsx.LookupMX(ctx, cache, "example.test")
	txt, _ := dnsx.LookupTXT(ctx, cache, "example.test")
	_, err = dnsx.LookupA(ctx, cache, "nowhere.example.test")
	fmt.Println(mx, txt, dnsx.IsNotFound(err))
	// Output: [{mx.example.test 10} {backup.example.test 20}] [v=spf1 -all] true
}

func TestTXTDataUnescapes(t *testing.T) {
	rr, err := dns.NewRR(`x.example. 60 IN TXT "v=spf1 \"q\" \\ caf\195\169" " -all"`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dnsx.TXTData(rr.(*dns.TXT)), "v=spf1 \"q\" \\ café -all"; got != want {
		t.Fatalf("TXTData = %q, want %q", got, want)
	}
}
