package auth

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-mail/portcullis/bytesize"
)

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{
		"alice@example.org", "Alice.Smith+tag@Example.ORG.", "jürgen@bücher.example",
		"ΑΛΦΑ@ελ.example", "a..b@x.org", "\"quoted\"@x.org", "a@b@c", "@x", "x@", "a@-x.org",
		"a@xn--bcher-kva.example", "a@[192.0.2.1]", "a\x00b@x.org", "a b@x.org", "a%b@x.org",
		"\xff@x.org", "a@x_y.org", strings.Repeat("a", 65) + "@x.org",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := NormalizeAddress(s)
		if err != nil {
			return
		}
		again, err := NormalizeAddress(out)
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
func FuzzExpandFilter(f *testing.F) {
	for _, s := range []string{"alice", "*", "*)(uid=*", "a\\29", "\x00", "é", ")(|(objectClass=*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		filter := expandFilter("(&(objectClass=inetOrgPerson)(uid=%s))", name)
		p, err := ldap.CompileFilter(filter)
		if err != nil {
			t.Fatalf("%q: %v", filter, err)
		}
		back, err := ldap.DecompileFilter(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(back, "(") != 3 || strings.Contains(back, "=*") {
			t.Fatalf("name %q changed the filter: %s", name, back)
		}
		if got := p.Children[1].Children[1].Data.String(); got != name {
			t.Fatalf("value %q, want %q", got, name)
		}
	})
}

// FuzzVerifyPassword: stored hashes are parsed with bounds, never a panic or an
// unbounded allocation.
func FuzzVerifyPassword(f *testing.F) {
	for _, s := range []string{
		"$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$2y$04$abcdefghijklmnopqrstuu5Ue9vH0Ee3QxbWvq8MjGjE0Kq3qBrXy", "{BLF-CRYPT}$2a$04$x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if p, err := parseArgon2(stripScheme(h)); err == nil && (p.params.Memory > 4096*bytesize.KiB || p.params.Iterations > 4) {
			return // valid but too costly to verify in a fuzz loop
		}
		if strings.Contains(h, "$2") {
			if c, err := bcrypt.Cost([]byte(stripScheme(h))); err == nil && c > 6 {
				return
			}
		}
		VerifyPassword(h, "password", Argon2Params{})
	})
}
