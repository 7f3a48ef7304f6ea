package bayes

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkLookup measures the token-table lookups of classification: 1000 messages of
// 400 tokens, half of them known, against a table of 130k tokens.
func BenchmarkLookup(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	m := newTokenMap()
	known := make([]uint64, 130000)
	for i := range known {
		known[i] = r.Uint64()
		m.set(known[i], entry{spam: 1, ham: 2})
	}
	msgs := make([][]uint64, 1000)
	for i := range msgs {
		msgs[i] = make([]uint64, 400)
		for j := range msgs[i] {
			if j%2 == 0 {
				msgs[i][j] = known[r.IntN(len(known))]
			} else {
				msgs[i][j] = r.Uint64()
			}
		}
	}
	out := make([]Counts, 400)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j, k := range msgs[i%len(msgs)] {
			out[j] = m.counts(k)
		}
	}
}
