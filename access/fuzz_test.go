package access

import (
	"net/netip"
	"strings"
	"testing"
)

var tableSeeds = []string{
	"example.com REJECT no\n192.0.2 550 5.7.1 go\n  continued\n# c\n<> OK\n",
	"10.0.0.0/8 REJECT\nif !10.1.0.0/16\n10.2.0.0/16 HOLD x\nendif\n! 192.168.0.0/16 DUNNO\n[2001:db8::]/32 DEFER\n",
	"a FILTER smtp:[127.0.0.1]:10025\nb PREPEND X-A: b\nc\tDEFER_IF_PERMIT\n",
}

// FuzzParseTables: a table file never panics the parsers; an error names the file and a
// line; a loaded table answers lookups of any key.
func FuzzParseTables(f *testing.F) {
	for _, s := range tableSeeds {
		f.Add(s, "a@example.com")
	}
	f.Fuzz(func(t *testing.T, body, key string) {
		for _, parse := range []func() (table, error){
			func() (table, error) { return parseHash(strings.NewReader(body), "fuzz", validateResult) },
			func() (table, error) { return parseCIDR(strings.NewReader(body), "fuzz", validateResult) },
		} {
			tb, err := parse()
			if err != nil {
				if !strings.HasPrefix(err.Error(), "access: fuzz:") {
					t.Fatalf("error without file and line: %v", err)
				}
				continue
			}
			for _, k := range []string{key, strings.ToLower(key), "192.0.2.1", "2001:db8::1"} {
				if e, ok, _ := tb.get(k); ok {
					if _, err := ParseAction(e.Value); err != nil {
						t.Fatalf("loaded an invalid result %q: %v", e.Value, err)
					}
				}
			}
		}
		if ip, err := netip.ParseAddr(key); err == nil {
			_ = Keys{ParentMatchesSubdomains: true}.clientKeys(key, ip)
		}
		_ = Keys{RecipientDelimiter: "+-"}.mailKeys(key)
	})
}
