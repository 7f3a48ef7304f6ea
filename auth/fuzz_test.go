package auth

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-mail/portcullis/bytesize"
)

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
