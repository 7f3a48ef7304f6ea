package spf

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/dnsx"
)

// FuzzParseRecord: no record text makes the parser panic, and what it accepts is ASCII.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all", "v=spf1 a mx ptr ~all", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",
		"v=spf1 a:%{d}/24//64 mx:mail.%{o}/30 exists:%{ir}.%{l1r-}.e.%{d} redirect=_spf.%{d2}",
		"v=spf1 include:_spf.example.com exp=explain.%{d} moo.cow-far_out=man:dog/cat ?all",
		"v=spf1 a:foo-bar -all", "v=spf1 ip4:1.2.3.4/33", "v=spf1 -all.", "v=spf1 %{", "V=SPF1 +ALL",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := parseRecord(s)
		if err != nil {
			return
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				t.Fatalf("accepted non-ASCII record %q", s)
			}
		}
		for _, d := range rec.directives {
			if d.cidr4 < 0 || d.cidr4 > 32 || d.cidr6 < 0 || d.cidr6 > 128 {
				t.Fatalf("bad prefix lengths in %q", s)
			}
		}
	})
}

// FuzzMacroExpand: parsing and expanding any macro string never panics, and a domain
// expansion is at most 253 octets when it has a label boundary to cut at.
func FuzzMacroExpand(f *testing.F) {
	for _, s := range []string{
		"%{s}", "%{ir}.%{v}._spf.%{d2}", "%{lr-}.lp._spf.%{d2}", "%{S}%%%_%-", "%{l1r+-=,/_}",
		"%{c} is %{r} at %{t}", "%{p}.%{h}.%{o}", "%{d99r}", "%", "%{", "%{d0}", "%{x}",
	} {
		f.Add(s, "strong-bad@email.example.com", true)
	}
	f.Fuzz(func(t *testing.T, s, sender string, exp bool) {
		ms, err := parseMacroString(s, exp)
		if err != nil {
			return
		}
		local, dom := splitSender(sender, "example.com")
		env := &macroEnv{
			sender: sender, local: local, senderDomain: dom, domain: dom, helo: "h.example",
			ip: netip.MustParseAddr("2001:db8::1"), ptr: func() string { return "unknown" },
			receiver: "r.example", now: 1,
		}
		out := ms.expand(env, true)
		if len(out) > maxDomainLen+1 && strings.Contains(out[len(out)-maxDomainLen:], ".") {
			t.Fatalf("domain expansion of %q is %d octets", s, len(out))
		}
		_, _ = parseDomainSpec(s, exp)
	})
}

// memResolver answers from memory without I/O: rec as the TXT record of example.com, and
// for every other name an A, AAAA, MX, PTR and an SPF record, so that every mechanism of
// a fuzzed record has something to evaluate.
type memResolver struct{ rec string }

func (m memResolver) Query(_ context.Context, name string, qt uint16) (*dnsx.Answer, error) {
	hdr := dns.RR_Header{Name: name, Rrtype: qt, Class: dns.ClassINET, Ttl: 60}
	ans := &dnsx.Answer{Name: name, Type: qt}
	switch qt {
	case dns.TypeTXT:
		txt := "v=spf1 ip4:192.0.2.0/24 -all"
		if strings.EqualFold(name, "example.com.") {
			txt = m.rec
		}
		ans.Records = append(ans.Records, &dns.TXT{Hdr: hdr, Txt: []string{txt}})
	case dns.TypeA:
		ans.Records = append(ans.Records, &dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 1)})
	case dns.TypeAAAA:
		ans.Records = append(ans.Records, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::1")})
	case dns.TypeMX:
		ans.Records = append(ans.Records, &dns.MX{Hdr: hdr, Preference: 10, Mx: "mx." + name})
	case dns.TypePTR:
		ans.Records = append(ans.Records, &dns.PTR{Hdr: hdr, Ptr: "host.example.com."})
	}
	return ans, nil
}

// FuzzCheck evaluates fuzzed records end to end (parse, macros, every mechanism) against
// an in-memory resolver: never a panic, always one of the seven results, and an error
// exactly for temperror and permerror.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"v=spf1 a mx ptr exists:%{i}.x.%{d} include:inc.example.net -all",
		"v=spf1 redirect=%{d2}.example.org", "v=spf1 -all exp=%{l}.exp.example.com",
		"v=spf1 a:%{p}.example.com/24//64 ?all", "v=spf1 mx/0 ~all",
	} {
		f.Add(s, "192.0.2.1")
	}
	f.Add("v=spf1 ip6:2001:db8::/32 a//64 -all", "2001:db8::1")
	valid := map[Status]bool{None: true, Neutral: true, Pass: true, Fail: true, SoftFail: true, TempError: true, PermError: true}
	f.Fuzz(func(t *testing.T, rec, ipText string) {
		ip, err := netip.ParseAddr(ipText)
		if err != nil {
			ip = netip.MustParseAddr("192.0.2.1")
		}
		res, err := Check(context.Background(), memResolver{rec}, ip, "helo.example.com", "user@example.com")
		if !valid[res.Status] {
			t.Fatalf("invalid status %q", res.Status)
		}
		if (err != nil) != (res.Status == TempError || res.Status == PermError) {
			t.Fatalf("status %s with error %v", res.Status, err)
		}
		_ = res.ReceivedSPF()
	})
}
