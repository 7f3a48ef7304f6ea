package address

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"alice@example.org", "Alice.Smith+tag@Example.ORG.", "jürgen@bücher.example",
		"ΑΛΦΑ@ελ.example", "a..b@x.org", "\"quoted\"@x.org", "a@b@c", "@x", "x@", "a@-x.org",
		"a@xn--bcher-kva.example", "a@[192.0.2.1]", "a\x00b@x.org", "a b@x.org", "a%b@x.org",
		"\xff@x.org", "a@x_y.org", strings.Repeat("a", 65) + "@x.org",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Normalize(s)
		if err != nil {
			return
		}
		again, err := Normalize(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, out, again, err)
		}
		at := strings.IndexByte(out, '@')
		if at <= 0 || strings.Count(out, "@") != 1 || !utf8.ValidString(out) {
			t.Fatalf("%q -> %q", s, out)
		}
		if len(out[:at]) > maxLocalLen || len(out[at+1:]) > maxDomainLen {
			t.Fatalf("%q -> %q: too long", s, out)
		}
		if strings.ContainsAny(out, " \t\r\n\x00\"()<>[]\\,;:%!") {
			t.Fatalf("%q -> %q: special character", s, out)
		}
		if d := out[at+1:]; strings.ToLower(d) != d {
			t.Fatalf("%q -> %q: domain not lower case", s, out)
		}
	})
}

// FuzzExpandFilter: whatever the user name, the filter keeps its structure (one
// equality match per %s) and compiles.
