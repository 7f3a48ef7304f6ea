package spf

import (
	"net/netip"
	"strings"
	"testing"
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
