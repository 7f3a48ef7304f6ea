package spf

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
)

var client4 = netip.MustParseAddr("192.0.2.10")

func check(t *testing.T, srv *dnstest.Server, ip netip.Addr, sender string) Result {
	t.Helper()
	res, err := Check(context.Background(), srv.Resolver(), ip, "mx.example.org", sender,
		WithReceiver("mx.portcullis.test"), WithTimeout(3*time.Second))
	if (err != nil) != (res.Status == TempError || res.Status == PermError) {
		t.Fatalf("status %s with error %v", res.Status, err)
	}
	return res
}

func TestLimits(t *testing.T) {
	chain := dnstest.Zone{}
	for i := range 12 {
		chain[fmt.Sprintf("c%d.test.", i)] = []string{fmt.Sprintf(`TXT "v=spf1 include:c%d.test -all"`, i+1)}
	}
	chain["c12.test."] = []string{`TXT "v=spf1 ip4:192.0.2.10 -all"`}
	var mx11, ptr12 []string
	for i := range 11 {
		mx11 = append(mx11, fmt.Sprintf("MX %d mx%d.many.test.", i, i))
	}
	for i := range 12 {
		ptr12 = append(ptr12, fmt.Sprintf("PTR h%d.ptr.test.", i))
	}
	srv := dnstest.New(t, chain, dnstest.Zone{
		"void2.test.":              {`TXT "v=spf1 a:nx1.void2.test a:nx2.void2.test ip4:192.0.2.10 -all"`},
		"void3.test.":              {`TXT "v=spf1 a:nx1.void3.test a:nx2.void3.test mx:nx3.void3.test ip4:192.0.2.10 -all"`},
		"many.test.":               append([]string{`TXT "v=spf1 mx -all"`}, mx11...),
		"mx9.many.test.":           {"A 192.0.2.10"},
		"ptr.test.":                {`TXT "v=spf1 ptr -all"`},
		"10.2.0.192.in-addr.arpa.": ptr12,
		"h11.ptr.test.":            {"A 192.0.2.10"},
		"h3.ptr.test.":             {"A 192.0.2.99"},
		"ten.test.":                {`TXT "v=spf1 a:a1.test a:a2.test a:a3.test a:a4.test a:a5.test a:a6.test a:a7.test a:a8.test a:a9.test a:a10.test -all"`},
		"eleven.test.":             {`TXT "v=spf1 a:a1.test a:a2.test a:a3.test a:a4.test a:a5.test a:a6.test a:a7.test a:a8.test a:a9.test a:a1.test a:a2.test ip4:192.0.2.10 -all"`},
		"a1.test.":                 {"A 192.0.2.1"}, "a2.test.": {"A 192.0.2.1"}, "a3.test.": {"A 192.0.2.1"},
		"a4.test.": {"A 192.0.2.1"}, "a5.test.": {"A 192.0.2.1"}, "a6.test.": {"A 192.0.2.1"},
		"a7.test.": {"A 192.0.2.1"}, "a8.test.": {"A 192.0.2.1"}, "a9.test.": {"A 192.0.2.1"},
		"a10.test.": {"A 192.0.2.10"},
		"big.test.": {`TXT "v=spf1 ` + strings.Repeat(`ip4:192.0.2.1 `, 20) + `" "` + strings.Repeat(`ip4:192.0.2.1 `, 300) + `-all"`},
	})
	for _, tc := range []struct {
		domain string
		want   Status
	}{
		{"c0.test", PermError}, // 12 nested includes: over the 10-term limit
		{"c1.test", PermError}, // 11 nested includes
		{"c2.test", Pass},      // exactly 10
		{"void2.test", Pass},   // two void lookups are allowed
		{"void3.test", PermError},
		{"many.test", PermError}, // 11 MX names
		{"ptr.test", Fail},       // the matching PTR name is the 12th: ignored
		{"ten.test", Pass},       // exactly 10 lookups
		{"eleven.test", PermError},
		{"big.test", PermError}, // record over 4096 bytes
	} {
		t.Run(tc.domain, func(t *testing.T) {
			res := check(t, srv, client4, "user@"+tc.domain)
			if res.Status != tc.want {
				t.Fatalf("%s: got %s (%s), want %s", tc.domain, res.Status, res.Problem, tc.want)
			}
		})
	}
}

func TestDNSFaults(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"servfail.test.":  {`TXT "v=spf1 -all"`},
		"slowinc.test.":   {`TXT "v=spf1 include:slow.test -all"`},
		"slow.test.":      {`TXT "v=spf1 +all"`},
		"garbled.test.":   {`TXT "v=spf1 +all"`},
		"loop.test.":      {"CNAME loop2.test."},
		"loop2.test.":     {"CNAME loop.test."},
		"refusedinc.test": {`TXT "v=spf1 a:refused.test -all"`},
		"refused.test.":   {"A 192.0.2.10"},
		"nonascii.test.":  {`TXT "v=spf1 a:\195\169t\195\169.test -all"`},
		"quoted.test.":    {`TXT "v=spf1 exp=x.quoted.test ip4:192.0.2.1 -all"`},
		"x.quoted.test.":  {`TXT "say \"no\" to %{i}"`},
	})
	srv.Fail("servfail.test", dnstest.ServFail)
	srv.Fail("slow.test", dnstest.Timeout)
	srv.Fail("garbled.test", dnstest.Malformed)
	srv.Fail("refused.test", dnstest.Refused)
	for _, tc := range []struct {
		domain string
		want   Status
	}{
		{"servfail.test", TempError},
		{"slowinc.test", TempError},
		{"garbled.test", TempError},
		{"loop.test", TempError},       // dnsx reports a CNAME loop as a failed lookup
		{"refusedinc.test", TempError}, // any rcode but 0 and 3 (RFC 7208 §5)
		{"nonascii.test", PermError},
		{"quoted.test", Fail},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			start := time.Now()
			res := check(t, srv, client4, "user@"+tc.domain)
			if res.Status != tc.want {
				t.Fatalf("got %s (%s), want %s", res.Status, res.Problem, tc.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %s", d)
			}
			if tc.domain == "quoted.test" && res.Explanation != `say "no" to 192.0.2.10` {
				t.Fatalf("explanation %q", res.Explanation)
			}
		})
	}

	// One deadline bounds the whole check, however many terms time out.
	srv.Set("manyslow.test", `TXT "v=spf1 a:s1.slow.test a:s2.slow.test a:s3.slow.test -all"`)
	for _, n := range []string{"s1.slow.test", "s2.slow.test", "s3.slow.test"} {
		srv.Fail(n, dnstest.Timeout)
	}
	r := srv.ResolverWith(dnsx.ClientConfig{Timeout: 5 * time.Second, Attempts: 3})
	start := time.Now()
	res, err := Check(context.Background(), r, client4, "h.test", "u@manyslow.test", WithTimeout(400*time.Millisecond))
	if res.Status != TempError || err == nil {
		t.Fatalf("got %s, %v; want temperror", res.Status, err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("deadline not honoured: %s", d)
	}
}

func TestIdentitiesAndIPv6(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"example.org.":    {`TXT "v=spf1 a:mx.example.org mx ip6:2001:db8::/32 -all"`, "MX 10 mx.example.org."},
		"mx.example.org.": {"A 192.0.2.10", "AAAA 2001:db8:1::25"},
		"helo.test.":      {`TXT "v=spf1 ip4:192.0.2.0/24 ~all"`},
	})
	r := srv.Resolver()
	ctx := context.Background()
	for _, tc := range []struct {
		ip, helo, sender string
		want             Status
		id               Identity
	}{
		{"192.0.2.10", "helo.test", "a@example.org", Pass, IdentityMailFrom},
		{"192.0.2.11", "helo.test", "a@example.org", Fail, IdentityMailFrom},
		{"2001:db8:1::25", "helo.test", "a@example.org", Pass, IdentityMailFrom},
		{"2001:db9::1", "helo.test", "a@example.org", Fail, IdentityMailFrom},
		{"::ffff:192.0.2.10", "helo.test", "a@example.org", Pass, IdentityMailFrom}, // mapped
		{"192.0.2.77", "helo.test", "", Pass, IdentityHelo},                         // null sender: HELO
		{"198.51.100.1", "helo.test", "", SoftFail, IdentityHelo},
	} {
		res, _ := Check(ctx, r, netip.MustParseAddr(tc.ip), tc.helo, tc.sender)
		if res.Status != tc.want || res.Identity != tc.id {
			t.Errorf("%s %s <%s>: got %s/%s (%s), want %s/%s", tc.ip, tc.helo, tc.sender, res.Status, res.Identity, res.Problem, tc.want, tc.id)
		}
	}
	res, _ := CheckHelo(ctx, r, netip.MustParseAddr("192.0.2.1"), "helo.test")
	if res.Status != Pass || res.Sender != "postmaster@helo.test" {
		t.Fatalf("helo: %+v", res)
	}
}

func TestReceivedSPF(t *testing.T) {
	res := Result{
		Status: Pass, Identity: IdentityMailFrom, Sender: "myname@example.com", Mechanism: "ip4:192.0.2.0/24",
		ClientIP: netip.MustParseAddr("192.0.2.1"), Helo: "foo.example.com", Receiver: "mybox.example.org",
	}
	want := `pass (mybox.example.org: domain of myname@example.com designates 192.0.2.1 as permitted sender) client-ip=192.0.2.1; envelope-from="myname@example.com"; helo=foo.example.com; receiver=mybox.example.org; identity=mailfrom; mechanism=ip4:192.0.2.0/24`
	if got := res.ReceivedSPF(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Hostile input cannot break out of the comment or the values.
	res = Result{Status: PermError, Identity: IdentityHelo, Helo: "x)\r\nX-Evil: 1 \"(", Problem: "bad\r\nrecord",
		ClientIP: netip.MustParseAddr("192.0.2.1"), Receiver: "r"}
	got := res.ReceivedSPF()
	if strings.ContainsAny(got, "\r\n") || strings.Count(got[:strings.Index(got, ") ")+1], "(") != 1 || !strings.Contains(got, `helo="x)??X-Evil: 1 \"("`) {
		t.Fatalf("unsafe header value: %s", got)
	}
}

func TestPolicy(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"example.org.":      {`TXT "v=spf1 ip4:192.0.2.10 -all exp=why.example.org"`},
		"why.example.org.":  {`TXT "%{i} is not a mail server of %{d}"`},
		"helo.example.net.": {`TXT "v=spf1 ip4:192.0.2.0/24 -all"`},
	})
	p, err := New(Config{Helo: true}, Deps{Resolver: srv.Resolver()})
	if err != nil {
		t.Fatal(err)
	}
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("192.0.2.20"), HELO: "helo.example.net"})
	tx.Hostname = "mx.portcullis.test"
	tx.Envelope.From = address.Parse("<bob@example.org>")
	r := p.CheckMail(context.Background(), tx)
	if r.Status != policy.StatusFail || r.Reason != "spf.fail" || r.Err != nil {
		t.Fatalf("mail: %+v", r)
	}
	decl := p.DeclareFacts()
	for k, v := range r.Facts {
		if fmt.Sprintf("%T", decl[k]) != fmt.Sprintf("%T", v) {
			t.Errorf("fact %s: %T not declared as such (%T)", k, v, decl[k])
		}
	}
	if r.Facts["helo_result"] != "pass" || r.Facts["explanation"] != "192.0.2.20 is not a mail server of example.org" || r.Facts["mechanism"] != "-all" {
		t.Fatalf("facts: %v", r.Facts)
	}
	if len(r.Headers) != 1 || r.Headers[0].Name != "Received-SPF" || !strings.HasPrefix(r.Headers[0].Value, "fail (mx.portcullis.test: ") {
		t.Fatalf("headers: %+v", r.Headers)
	}
	tx.Envelope.From = address.Parse("<>")
	if r := p.CheckMail(context.Background(), tx); r.Status != policy.StatusPass || r.Facts["identity"] != "helo" {
		t.Fatalf("null sender: %+v", r)
	}
	if r := p.CheckHelo(context.Background(), tx); r.Status != policy.StatusPass || r.Facts["domain"] != "helo.example.net" {
		t.Fatalf("helo: %+v", r)
	}
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Fatal("nil resolver accepted")
	}
}

func TestMacroExpansion(t *testing.T) {
	// RFC 7208 §7.4 examples.
	env := &macroEnv{
		sender: "strong-bad@email.example.com", local: "strong-bad", senderDomain: "email.example.com",
		domain: "email.example.com", helo: "mx.example.org", ip: netip.MustParseAddr("192.0.2.3"),
		ptr: func() string { return "unknown" }, receiver: "r.test", now: 1,
	}
	for in, want := range map[string]string{
		"%{s}":                              "strong-bad@email.example.com",
		"%{o}":                              "email.example.com",
		"%{d}":                              "email.example.com",
		"%{d4}":                             "email.example.com",
		"%{d3}":                             "email.example.com",
		"%{d2}":                             "example.com",
		"%{d1}":                             "com",
		"%{dr}":                             "com.example.email",
		"%{d2r}":                            "example.email",
		"%{l}":                              "strong-bad",
		"%{l-}":                             "strong.bad",
		"%{lr}":                             "strong-bad",
		"%{lr-}":                            "bad.strong",
		"%{l1r-}":                           "strong",
		"%{ir}.%{v}._spf.%{d2}":             "3.2.0.192.in-addr._spf.example.com",
		"%{lr-}.lp._spf.%{d2}":              "bad.strong.lp._spf.example.com",
		"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}":   "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
		"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}":  "3.2.0.192.in-addr.strong.lp._spf.example.com",
		"%{d2}.trusted-domains.example.net": "example.com.trusted-domains.example.net",
		"%{S}%%%_%-":                        "strong-bad%40email.example.com% %20",
	} {
		ms, err := parseMacroString(in, false)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := ms.expand(env, false); got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
	env.ip = netip.MustParseAddr("2001:db8::cb01")
	ms, _ := parseMacroString("%{ir}.%{v}._spf.%{d2}", false)
	if got := ms.expand(env, false); got != "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com" {
		t.Errorf("ipv6: %s", got)
	}
	for _, bad := range []string{"%{c}", "%{x}", "%{d0}", "%", "%{d", "%a", "%{d2r!}"} {
		if _, err := parseMacroString(bad, false); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// §7.3: expansions used as domains are cut from the left to 253 octets.
	env.local = strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + "." + strings.Repeat("e", 60)
	ms, _ = parseMacroString("%{l}.example.com", false)
	if got := ms.expand(env, true); len(got) > 253 || !strings.HasSuffix(got, ".example.com") || !strings.HasPrefix(got, "c") {
		t.Errorf("truncation: %d %q", len(got), got)
	}
}

// TestExplanationScope: an included record's exp= is never used (nor looked up); after a
// redirect the target's exp= applies, not the original's (RFC 7208 §6.2).
func TestExplanationScope(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"inc.test.":       {`TXT "v=spf1 include:sub.inc.test -all exp=top.inc.test"`},
		"sub.inc.test.":   {`TXT "v=spf1 -all exp=sub.exp.test"`},
		"top.inc.test.":   {`TXT "top says no"`},
		"sub.exp.test.":   {`TXT "sub says no"`},
		"red.test.":       {`TXT "v=spf1 redirect=target.test exp=orig.exp.test"`},
		"target.test.":    {`TXT "v=spf1 -all exp=target.exp.test"`},
		"orig.exp.test.":  {`TXT "original"`},
		"target.exp.test": {`TXT "from the target of %{d}"`},
	})
	res := check(t, srv, client4, "u@inc.test")
	if res.Status != Fail || res.Explanation != "top says no" || srv.QueriesFor("sub.exp.test", dns.TypeTXT) != 0 {
		t.Fatalf("include: %+v, %d queries for the included exp", res, srv.QueriesFor("sub.exp.test", dns.TypeTXT))
	}
	res = check(t, srv, client4, "u@red.test")
	if res.Status != Fail || res.Explanation != "from the target of target.test" || res.Domain != "target.test" {
		t.Fatalf("redirect: %+v", res)
	}
}
