package auth

import (
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// Argon2Params.Memory is a size in bytes (argon2 counts KiB): it must be whole KiB, and
// a stored hash's m= (KiB) reads back as the same size.
func TestArgon2Memory(t *testing.T) {
	h, err := HashPassword("pw", Argon2Params{Memory: 64 * bytesize.KiB, Iterations: 1, Parallelism: 1})
	if err != nil || !strings.Contains(h, "$m=64,t=1,p=1$") {
		t.Fatalf("hash %q, %v", h, err)
	}
	p, err := parseArgon2(h)
	if err != nil || p.params.Memory != 64*bytesize.KiB {
		t.Fatalf("parsed %+v, %v", p, err)
	}
	for _, m := range []bytesize.Size{1000, 4 * bytesize.KiB, 2 * bytesize.GiB} {
		if _, err := HashPassword("pw", Argon2Params{Memory: m}); err == nil {
			t.Errorf("memory %v accepted", m)
		}
	}
}
