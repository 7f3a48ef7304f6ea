package sieve

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestContainsFoldASCII checks the IndexByte search against folding both strings and
// searching, on random strings over a small alphabet (many partial matches).
func TestContainsFoldASCII(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aAbB@1 \xc3\xa9"
	rnd := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 20000 {
		s, sub := rnd(rng.IntN(40)), rnd(rng.IntN(5))
		want := strings.Contains(lowerASCII(s), lowerASCII(sub))
		if got := containsFoldASCII(s, sub); got != want {
			t.Fatalf("containsFoldASCII(%q, %q) = %v, want %v", s, sub, got, want)
		}
	}
	for _, c := range []struct {
		s, sub string
		want   bool
	}{{"Please UNSUBSCRIBE here", "unsubscribe", true}, {"unsubscrib", "unsubscribe", false},
		{"x", "", true}, {"", "x", false}, {"aaab", "AB", true}, {"1.5", "5", true}} {
		if got := containsFoldASCII(c.s, c.sub); got != c.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v", c.s, c.sub, got)
		}
	}
}
