package rbl_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/rbl"
)

var (
	listedIP  = netip.MustParseAddr("192.0.2.1")
	pblIP     = netip.MustParseAddr("192.0.2.2")
	cleanIP   = netip.MustParseAddr("192.0.2.3")
	goodIP    = netip.MustParseAddr("192.0.2.4")
	listedIP6 = netip.MustParseAddr("2001:db8::1")
)

// lists is a set of DNS lists as their operators publish them.
func lists() dnstest.Zone {
	rev := func(ip netip.Addr, zone string) string { return dnsx.ReverseLabels(ip) + zone }
	return dnstest.Zone{
		rev(listedIP, "zen.test."):      {"A 127.0.0.2", "A 127.0.0.4", `TXT "https://zen.test/query/ip/192.0.2.1"`},
		rev(pblIP, "zen.test."):         {"A 127.0.0.10"},
		rev(listedIP6, "zen.test."):     {"A 127.0.0.3"},
		rev(listedIP, "spamcop.test."):  {"A 127.0.0.2"},
		rev(goodIP, "dnswl.test."):      {"A 127.0.15.2"},
		rev(goodIP, "zen.test."):        {"A 127.0.0.2"},
		rev(cleanIP, "refuse.test."):    {"A 127.255.255.254"},
		rev(cleanIP, "ratelimit.test."): {"A 127.255.255.255"},
		rev(cleanIP, "hijack.test."):    {"A 198.51.100.1"},
		"spam.example.dbl.test.":        {"A 127.0.1.2", `TXT "spam domain"`},
		"bad-helo.example.dbl.test.":    {"A 127.0.1.2"},
		"phish.example.dbl.test.":       {"A 127.0.1.4"},
		"example.co.uk.dbl.test.":       {"A 127.0.1.2"},
	}
}

func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestParseSite(t *testing.T) {
	good := []struct {
		spec   string
		weight int
		match  []string
		nomat  []string
	}{
		{"zen.spamhaus.org=127.0.0.[2..11]*3", 3, []string{"127.0.0.2", "127.0.0.11"}, []string{"127.0.0.1", "127.0.0.12", "127.0.1.2"}},
		{"list.dnswl.org=127.0.[0..255].[1..3]*-5", -5, []string{"127.0.15.1", "127.0.0.3"}, []string{"127.0.0.0", "127.0.0.255"}},
		{"b.barracudacentral.org=127.0.0.2*7", 7, []string{"127.0.0.2"}, []string{"127.0.0.3"}},
		{"bl.spamcop.net", 1, []string{"127.0.0.2", "127.1.2.3"}, nil},
		{"bl.mailspike.net=127.0.0.[2;10..12]", 1, []string{"127.0.0.2", "127.0.0.11"}, []string{"127.0.0.3", "127.0.0.13"}},
		{"Zen.Spamhaus.ORG.*2", 2, []string{"127.0.0.2"}, nil},
	}
	for _, g := range good {
		s, err := rbl.ParseSite(g.spec, 1)
		if err != nil {
			t.Errorf("%s: %v", g.spec, err)
			continue
		}
		if s.Weight != g.weight || s.Zone != strings.ToLower(strings.TrimSuffix(strings.Split(strings.Split(g.spec, "=")[0], "*")[0], "."))+"." {
			t.Errorf("%s: zone %q weight %d", g.spec, s.Zone, s.Weight)
		}
		for _, m := range g.match {
			if !s.Match(netip.MustParseAddr(m)) {
				t.Errorf("%s should match %s", g.spec, m)
			}
		}
		for _, m := range g.nomat {
			if s.Match(netip.MustParseAddr(m)) {
				t.Errorf("%s should not match %s", g.spec, m)
			}
		}
	}
	bad := []string{"", "zen", "zen.spamhaus.org=127.0.0", "zen.spamhaus.org=127.0.0.[11..2]", "zen.spamhaus.org=127.0.0.256",
		"zen.spamhaus.org*x", "zen.spamhaus.org=127.0.0.[2;", "zen spamhaus.org", "zen.spamhaus.org=a.b.c.d", "zen.spamhaus.org*99999",
		strings.Repeat("a.", 300) + "org"}
	for _, b := range bad {
		if _, err := rbl.ParseSite(b, 1); err == nil {
			t.Errorf("%q accepted", b)
		}
	}
}

func TestSpecsYAML(t *testing.T) {
	var cfg rbl.Config
	if err := yaml.Unmarshal([]byte("rbl: zen.spamhaus.org=127.0.0.[2..11]*3\ntxt: true\n"), &cfg); err != nil || len(cfg.RBL) != 1 || !cfg.TXT {
		t.Fatalf("scalar: %+v %v", cfg, err)
	}
	if err := yaml.Unmarshal([]byte("rbl: [a.test, b.test]\ndnswl: list.dnswl.org\ntimeout: 2s\n"), &cfg); err != nil || len(cfg.RBL) != 2 || len(cfg.DNSWL) != 1 {
		t.Fatalf("list: %+v %v", cfg, err)
	}
}

func TestClientLookup(t *testing.T) {
	srv := dnstest.New(t, lists())
	c := rbl.NewClient(srv.Resolver())
	ctx := tctx(t)

	l, err := c.Lookup(ctx, "zen.test", listedIP)
	if err != nil || !l.Listed() || fmt.Sprint(l.Codes) != "[127.0.0.2 127.0.0.4]" || l.TXT != "" {
		t.Fatalf("listed = %+v, %v", l, err)
	}
	if l.Name != "1.2.0.192.zen.test." {
		t.Fatalf("name = %s", l.Name)
	}
	l, err = c.Lookup(ctx, "zen.test", listedIP6)
	if err != nil || !l.Listed() || !strings.HasPrefix(l.Name, "1.0.0.0.0.0.0.0.0.0.0.0") || !strings.HasSuffix(l.Name, ".8.b.d.0.1.0.0.2.zen.test.") {
		t.Fatalf("IPv6 = %+v, %v", l, err)
	}
	if l, err := c.Lookup(ctx, "zen.test", netip.AddrFrom16(listedIP.As16())); err != nil || !l.Listed() {
		t.Fatalf("IPv4-mapped = %+v, %v", l, err)
	}
	if l, err := c.Lookup(ctx, "zen.test", cleanIP); err != nil || l.Listed() {
		t.Fatalf("clean = %+v, %v", l, err)
	}
	c.TXT = true
	if l, err := c.Lookup(ctx, "zen.test", listedIP); err != nil || l.TXT != "https://zen.test/query/ip/192.0.2.1" {
		t.Fatalf("TXT = %+v, %v", l, err)
	}
	if l, err := c.LookupDomain(ctx, "dbl.test.", "Spam.Example."); err != nil || !l.Listed() || l.TXT != "spam domain" {
		t.Fatalf("domain = %+v, %v", l, err)
	}
	if _, err := c.Lookup(ctx, "zen.test", netip.Addr{}); err == nil {
		t.Fatal("invalid IP accepted")
	}
	if _, err := c.LookupDomain(ctx, "dbl.test", strings.Repeat("a", 70)+".example"); err == nil {
		t.Fatal("over-long label accepted")
	}
}

func TestRefusalCodesAreErrors(t *testing.T) {
	srv := dnstest.New(t, lists())
	c := rbl.NewClient(srv.Resolver())
	ctx := tctx(t)
	_, err := c.Lookup(ctx, "refuse.test", cleanIP)
	var ce *rbl.CodeError
	if !errors.Is(err, rbl.ErrRefused) || dnsx.IsTemporary(err) || !errors.As(err, &ce) || ce.Code.String() != "127.255.255.254" {
		t.Fatalf("127.255.255.254 = %v", err)
	}
	if _, err := c.Lookup(ctx, "ratelimit.test", cleanIP); !errors.Is(err, rbl.ErrRefused) || !dnsx.IsTemporary(err) {
		t.Fatalf("127.255.255.255 = %v", err)
	}
	if _, err := c.Lookup(ctx, "hijack.test", cleanIP); !errors.Is(err, rbl.ErrBadCode) {
		t.Fatalf("198.51.100.1 = %v", err)
	}
	srv.Fail(dnsx.ReverseLabels(cleanIP)+"zen.test", dnstest.ServFail)
	if _, err := c.Lookup(ctx, "zen.test", cleanIP); !dnsx.IsTemporary(err) {
		t.Fatalf("SERVFAIL = %v", err)
	}
}

func tx(ip netip.Addr) *policy.Transaction {
	return policy.NewTransaction(policy.Conn{IP: ip})
}

func newPolicy(t testing.TB, cfg rbl.Config, r dnsx.Resolver) *rbl.Policy {
	t.Helper()
	p, err := rbl.New(cfg, rbl.Deps{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyWeightsAndAllowlist(t *testing.T) {
	srv := dnstest.New(t, lists())
	p := newPolicy(t, rbl.Config{
		RBL:   rbl.Specs{"zen.test=127.0.0.[2..3]*3", "zen.test=127.0.0.[4..7]*2", "zen.test=127.0.0.[10;11]*0", "spamcop.test"},
		DNSWL: rbl.Specs{"dnswl.test=127.0.[0..255].[1..3]*-5"},
		TXT:   true,
	}, srv.Resolver())
	ctx := tctx(t)

	r := p.CheckConnect(ctx, tx(listedIP))
	if r.Status != policy.StatusFail || r.Reason != "rbl.listed" || r.Score != 6 || r.Err != nil {
		t.Fatalf("listed = %+v", r)
	}
	if got := r.Facts["lists"].([]string); !slices.Equal(got, []string{"zen.test", "spamcop.test"}) {
		t.Fatalf("lists = %v", got)
	}
	if got := r.Facts["codes"].([]string); !slices.Equal(got, []string{"127.0.0.2", "127.0.0.4"}) {
		t.Fatalf("codes = %v", got)
	}
	if r.Facts["weight"] != 6 || r.Facts["listed"] != true || r.Facts["allowlisted"] != false || !strings.Contains(r.Facts["txt"].(string), "zen.test/query") {
		t.Fatalf("facts = %v", r.Facts)
	}
	// One query per zone, whatever the number of sites on it.
	if n := srv.QueriesFor(dnsx.ReverseLabels(listedIP)+"zen.test", dns.TypeA); n != 1 {
		t.Fatalf("zen queried %d times", n)
	}

	// A code that no filter of positive weight matches is informational.
	r = p.CheckConnect(ctx, tx(pblIP))
	if r.Status != policy.StatusNeutral || r.Score != 0 || r.Facts["listed"] != true {
		t.Fatalf("PBL only = %+v", r)
	}
	// The allowlist outweighs the blocklist: 3 - 5.
	r = p.CheckConnect(ctx, tx(goodIP))
	if r.Status != policy.StatusPass || r.Reason != "rbl.allowlisted" || r.Score != -2 || r.Facts["allowlisted"] != true || r.Facts["listed"] != true {
		t.Fatalf("allowlisted = %+v", r)
	}
	r = p.CheckConnect(ctx, tx(cleanIP))
	if r.Status != policy.StatusNone || r.Reason != "rbl.not_listed" || r.Score != 0 || r.Err != nil {
		t.Fatalf("clean = %+v", r)
	}
	r = p.CheckConnect(ctx, tx(netip.Addr{}))
	if r.Status != policy.StatusNone {
		t.Fatalf("no IP = %+v", r)
	}
	checkFacts(t, p, r)
}

// checkFacts verifies that every fact reported is declared with the same type.
func checkFacts(t *testing.T, d policy.FactDeclarer, r policy.Result) {
	t.Helper()
	decl := d.DeclareFacts()
	for k, v := range r.Facts {
		dv, ok := decl[k]
		if !ok {
			t.Errorf("fact %q not declared", k)
			continue
		}
		if reflect.TypeOf(v) != reflect.TypeOf(dv) {
			t.Errorf("fact %q is %T, declared %T", k, v, dv)
		}
	}
	for k := range decl {
		if _, ok := r.Facts[k]; !ok {
			t.Errorf("declared fact %q not reported", k)
		}
	}
}

func TestPolicyErrors(t *testing.T) {
	srv := dnstest.New(t, lists())
	ctx := tctx(t)

	p := newPolicy(t, rbl.Config{RBL: rbl.Specs{"refuse.test", "zen.test"}}, srv.Resolver())
	r := p.CheckConnect(ctx, tx(cleanIP))
	if r.Status != policy.StatusPermError || !errors.Is(r.Err, rbl.ErrRefused) || !slices.Equal(r.Facts["errors"].([]string), []string{"refuse.test"}) {
		t.Fatalf("refused = %+v", r)
	}
	checkFacts(t, p, r)

	// A listing stays a listing when another list fails, and the error is kept.
	srv.Fail("*", dnstest.NoFault)
	p = newPolicy(t, rbl.Config{RBL: rbl.Specs{"zen.test", "slow.test"}, Timeout: 200 * time.Millisecond}, srv.ResolverWith(dnsx.ClientConfig{Timeout: 5 * time.Second, Attempts: 1}))
	srv.Fail(dnsx.ReverseLabels(listedIP)+"slow.test", dnstest.Timeout)
	start := time.Now()
	r = p.CheckConnect(ctx, tx(listedIP))
	if r.Status != policy.StatusFail || r.Err == nil || !dnsx.IsTemporary(r.Err) {
		t.Fatalf("listed with a timeout elsewhere = %+v", r)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("the check did not honour its timeout")
	}
	srv.Fail(dnsx.ReverseLabels(cleanIP)+"slow.test", dnstest.ServFail)
	r = p.CheckConnect(ctx, tx(cleanIP))
	if r.Status != policy.StatusTempError || r.Reason != "rbl.temperror" || !dnsx.IsTemporary(r.Err) {
		t.Fatalf("SERVFAIL = %+v", r)
	}
}

func TestPolicyConfigErrors(t *testing.T) {
	srv := dnstest.New(t)
	for _, cfg := range []rbl.Config{
		{},
		{RBL: rbl.Specs{"zen.test=127.0.0"}},
		{DNSWL: rbl.Specs{"dnswl.test*5"}},
		{RBL: rbl.Specs{"zen.test"}, MaxQueries: -1},
	} {
		if _, err := rbl.New(cfg, rbl.Deps{Resolver: srv.Resolver()}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := rbl.New(rbl.Config{RBL: rbl.Specs{"zen.test"}}, rbl.Deps{}); err == nil {
		t.Error("nil resolver accepted")
	}
	for _, cfg := range []rbl.RHSBLConfig{{}, {RHSBL: rbl.Specs{"dbl.test"}, On: []string{"helo", "body"}}} {
		if _, err := rbl.NewRHSBL(cfg, rbl.Deps{Resolver: srv.Resolver()}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestQueryCap(t *testing.T) {
	srv := dnstest.New(t, lists())
	var specs rbl.Specs
	for i := range 10 {
		specs = append(specs, fmt.Sprintf("l%d.test", i))
	}
	p := newPolicy(t, rbl.Config{RBL: specs, MaxQueries: 4}, srv.Resolver())
	r := p.CheckConnect(tctx(t), tx(cleanIP))
	if srv.Queries() != 4 || r.Facts["queries"] != 4 || r.Facts["capped"] != 6 {
		t.Fatalf("queries = %d, facts %v", srv.Queries(), r.Facts)
	}
}

const spamMessage = "From: \"Sp Ammer\" <offers@Phish.Example>\r\n" +
	"To: victim@example.org\r\n" +
	"Subject: deals\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=b\r\n" +
	"\r\n" +
	"--b\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Visit https://shop.www.example.co.uk/deal?id=3D1 and http://user@clean.example:8080/x=\r\n" +
	"y now\r\n" +
	"--b\r\n" +
	"Content-Type: text/html\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PGEgaHJlZj0iaHR0cDovL3NwYW0uZXhhbXBsZS9jbGljayI+Y2xpY2s8L2E+\r\n" + // <a href="http://spam.example/click">click</a>
	"--b\r\n" +
	"Content-Type: image/png\r\n" +
	"\r\n" +
	"http://not-text.example/\r\n" +
	"--b--\r\n"

func rhsblTx() *policy.Transaction {
	t := policy.NewTransaction(policy.Conn{IP: cleanIP, Hostname: "mail.clean.example", HELO: "bad-helo.example"})
	t.Envelope.From = address.Parse("<someone@spam.example>")
	t.Message = policy.NewMessage([]byte(spamMessage), time.Now())
	return t
}

func TestRHSBLSubjectsAndStages(t *testing.T) {
	srv := dnstest.New(t, lists())
	p, err := rbl.NewRHSBL(rbl.RHSBLConfig{
		RHSBL: rbl.Specs{"dbl.test=127.0.1.[2..99]"},
		On:    []string{"helo", "sender", "client_hostname", "from_header", "body_urls"},
		TXT:   true,
	}, rbl.Deps{Resolver: srv.Resolver()})
	if err != nil {
		t.Fatal(err)
	}
	if got := policy.Serves(p); !slices.Equal(got, []policy.Stage{policy.StageConnect, policy.StageHelo, policy.StageMail, policy.StageData}) {
		t.Fatalf("stages = %v", got)
	}
	x := rhsblTx()
	got := fmt.Sprint(p.Subjects(x, policy.StageData))
	want := "[{mail.clean.example client_hostname} {bad-helo.example helo} {spam.example sender} {phish.example from_header} {example.co.uk body_urls} {clean.example body_urls}]"
	if got != want {
		t.Fatalf("subjects\n got %s\nwant %s", got, want)
	}
	ctx := tctx(t)
	r := p.CheckConnect(ctx, x)
	if r.Status != policy.StatusNone || r.Facts["listed"] != false {
		t.Fatalf("connect = %+v", r)
	}
	r = p.CheckHelo(ctx, x)
	if r.Status != policy.StatusFail || !slices.Equal(r.Facts["domains"].([]string), []string{"bad-helo.example"}) {
		t.Fatalf("helo = %+v", r)
	}
	r = p.CheckMail(ctx, x)
	if r.Score != 2 || !slices.Equal(r.Facts["domains"].([]string), []string{"bad-helo.example", "spam.example"}) || r.Facts["txt"] != "spam domain" {
		t.Fatalf("mail = %+v", r)
	}
	r = p.CheckData(ctx, x)
	if r.Score != 4 || !slices.Equal(r.Facts["domains"].([]string), []string{"bad-helo.example", "spam.example", "phish.example", "example.co.uk"}) {
		t.Fatalf("data = %+v", r.Facts)
	}
	hits := r.Facts["hits"].([]map[string]any)
	if len(hits) != 4 || hits[2]["source"] != "from_header" || hits[3]["source"] != "body_urls" {
		t.Fatalf("hits = %v", hits)
	}
	checkFacts(t, p, r)

	// Without a message, nothing at all, or a null sender.
	bare := policy.NewTransaction(policy.Conn{IP: cleanIP, HELO: "[192.0.2.3]"})
	bare.Envelope.From = address.Parse("<>")
	if r := p.CheckData(ctx, bare); r.Status != policy.StatusNone || r.Reason != "rbl.no_domain" {
		t.Fatalf("bare = %+v", r)
	}
	checkFacts(t, p, p.CheckData(ctx, bare))

	// The default subjects, and Registrable.
	p2, err := rbl.NewRHSBL(rbl.RHSBLConfig{RHSBL: rbl.Specs{"dbl.test"}, Registrable: true}, rbl.Deps{Resolver: srv.Resolver()})
	if err != nil {
		t.Fatal(err)
	}
	x.Conn.HELO = "host.sub.Example.CO.UK."
	x.Envelope.From = address.Parse("<a@mail.Bücher.example>")
	if got := fmt.Sprint(p2.Subjects(x, policy.StageData)); got != "[{clean.example client_hostname} {example.co.uk helo} {xn--bcher-kva.example sender}]" {
		t.Fatalf("default subjects = %s", got)
	}
}

func TestURLDomains(t *testing.T) {
	got := rbl.URLDomains([]byte(spamMessage), 0, 0)
	if !slices.Equal(got, []string{"example.co.uk", "clean.example", "spam.example"}) {
		t.Fatalf("got %v", got)
	}
	// Not MIME at all, odd URLs, limits.
	text := "See www.One.example, HTTPS:\\\\two.example\\x, http://[2001:db8::1]/, http://192.0.2.1/, " +
		"http://com/, http://three.example./, https://bücher.example/, wwwx.four.example, http://-bad-.example/"
	got = rbl.URLDomains([]byte(text), 0, 0)
	if !slices.Equal(got, []string{"one.example", "two.example", "three.example", "xn--bcher-kva.example"}) {
		t.Fatalf("got %v", got)
	}
	if got := rbl.URLDomains([]byte(text), 0, 2); len(got) != 2 {
		t.Fatalf("maxDomains: %v", got)
	}
	if got := rbl.URLDomains([]byte(text), 20, 0); len(got) != 1 {
		t.Fatalf("maxBytes: %v", got)
	}
}

func FuzzURLDomains(f *testing.F) {
	f.Add([]byte(spamMessage))
	f.Add([]byte("http://a.b.c.example:80/ www.x.example https://user:pw@y.example?q"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhttp://z.example\r\n--x--"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := rbl.URLDomains(b, 1<<16, 10)
		if len(got) > 10 {
			t.Fatalf("%d domains", len(got))
		}
		for _, d := range got {
			if d == "" || strings.ContainsAny(d, " /:@") || strings.ToLower(d) != d || !strings.Contains(d, ".") {
				t.Fatalf("bad domain %q", d)
			}
		}
	})
}

func FuzzParseSite(f *testing.F) {
	for _, s := range []string{"zen.spamhaus.org=127.0.0.[2..11]*3", "list.dnswl.org=127.0.[0..255].[1..3]*-5", "a.b", "x.y=1.2.3.[4;5..6]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := rbl.ParseSite(spec, 1)
		if err != nil {
			return
		}
		if !strings.HasSuffix(s.Zone, ".") || s.Weight < -1000 || s.Weight > 1000 {
			t.Fatalf("%q parsed to %+v", spec, s)
		}
		s.Match(netip.MustParseAddr("127.0.0.2"))
	})
}
