package bayes

import (
	"math/rand/v2"
	"testing"
)

// TestTokenMap checks the open-addressing table against a Go map under random
// inserts, updates and deletes (with many collisions in a small key space, and key 0).
func TestTokenMap(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	m := newTokenMap()
	ref := map[uint64]entry{}
	for op := 0; op < 200000; op++ {
		k := uint64(r.IntN(5000))
		if r.IntN(4) == 0 {
			k = r.Uint64()
		}
		switch r.IntN(3) {
		case 0, 1:
			e := entry{spam: r.Uint32(), ham: r.Uint32(), day: uint16(r.IntN(1000))}
			m.set(k, e)
			ref[k] = e
		case 2:
			m.del(k)
			delete(ref, k)
		}
		if op%10000 == 0 || op == 199999 {
			if m.len() != len(ref) {
				t.Fatalf("op %d: len %d, want %d", op, m.len(), len(ref))
			}
			for k, want := range ref {
				if got, ok := m.get(k); !ok || got != want {
					t.Fatalf("op %d: get(%d) = %v %v, want %v", op, k, got, ok, want)
				}
				if c := m.counts(k); c != (Counts{want.spam, want.ham}) {
					t.Fatalf("counts(%d) = %v", k, c)
				}
			}
			n := 0
			for k, e := range m.all() {
				if ref[k] != e {
					t.Fatalf("all: %d = %v, want %v", k, e, ref[k])
				}
				n++
			}
			if n != len(ref) {
				t.Fatalf("all yielded %d, want %d", n, len(ref))
			}
		}
	}
	if _, ok := m.get(123456789012345); ok {
		t.Error("absent key found")
	}
}
