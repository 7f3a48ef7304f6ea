package auth

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestShaCryptVectors checks SHA-crypt against the specification's examples (the same
// strings glibc's crypt(3) gives).
func TestShaCryptVectors(t *testing.T) {
	for _, want := range []string{
		"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
		"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
		"$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
	} {
		got, err := shaCrypt("Hello world!", want)
		if err != nil || got != want {
			t.Errorf("shaCrypt = %q, %v; want %q", got, err, want)
		}
	}
}

// TestLegacyHashesFromDoveadm verifies hashes written by Dovecot's own `doveadm pw` (the
// oracle for what a migrated passwd-file or LDAP userPassword holds): the right password
// matches and asks for a rehash, a wrong one does not match.
func TestLegacyHashesFromDoveadm(t *testing.T) {
	doveadm := testenv.Program(t, "doveadm")
	const pw = "correct horse ☃"
	for _, scheme := range []string{"SSHA", "SSHA256", "SSHA512", "SHA", "SHA256", "SHA512", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT", "ARGON2ID"} {
		out, err := exec.Command(doveadm, "pw", "-s", scheme, "-p", pw).Output()
		if err != nil {
			t.Fatalf("doveadm pw -s %s: %v", scheme, err)
		}
		h := strings.TrimSpace(string(out))
		if err := CheckHash(h); err != nil {
			t.Errorf("%s: CheckHash(%q): %v", scheme, h, err)
			continue
		}
		ok, rehash, err := VerifyPassword(h, pw, Argon2Params{})
		if !ok || !rehash || err != nil {
			t.Errorf("%s: VerifyPassword(%q) = %v %v %v, want match and rehash", scheme, h, ok, rehash, err)
		}
		if ok, _, _ := VerifyPassword(h, pw+"x", Argon2Params{}); ok {
			t.Errorf("%s: wrong password matched", scheme)
		}
	}
	for _, bad := range []string{"{SSHA}", "{SSHA}!!!", "{SHA}YWJj", "$6$rounds=99999999$salt$x", "{MD5}x"} {
		if err := CheckHash(bad); err == nil {
			t.Errorf("CheckHash(%q) accepted", bad)
		}
	}
}
