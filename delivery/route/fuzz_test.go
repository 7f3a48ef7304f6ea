package route_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/delivery/route"
)

// FuzzParse feeds arbitrary map files to the parser in both syntaxes: no panic, and
// what parses has sane keys and values.
func FuzzParse(f *testing.F) {
	f.Add([]byte("postmaster: root\nroot: alice,\n\tbob@example.org\n"), true)
	f.Add([]byte("# virtual\ninfo@example.test a@example.test, b@example.test\n@example.test catchall\n"), false)
	f.Add([]byte("example.test lmtp:unix:/run/dovecot/lmtp\n.partner.test smtp:[gw]:2525\n* smtp:\n"), false)
	f.Add([]byte("\"quoted name\": \"a b\"@x, c\r\n  # comment\n  d\n"), true)
	f.Add([]byte("a \"unterminated\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, aliases bool) {
		syntax := route.Table
		if aliases {
			syntax = route.Aliases
		}
		entries, err := route.Parse(bytes.NewReader(data), syntax, "fuzz")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if e.Key == "" || e.Key != strings.ToLower(e.Key) || seen[e.Key] {
				t.Fatalf("bad or duplicate key %q", e.Key)
			}
			seen[e.Key] = true
			if len(e.Values) == 0 || len(e.Values) > route.MaxValues {
				t.Fatalf("key %q has %d values", e.Key, len(e.Values))
			}
			for _, v := range e.Values {
				if v == "" || strings.ContainsAny(v, "\r\n") {
					t.Fatalf("key %q: bad value %q", e.Key, v)
				}
			}
			if e.Line < 1 {
				t.Fatalf("line %d", e.Line)
			}
		}
	})
}
