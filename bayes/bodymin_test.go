package bayes

import (
	"context"
	"testing"
)

// TestBodyMinCount: with body_min_count 2, a body token seen in one trained message
// (a hapax) is not a clue, a header hapax still is, and a body token seen in two
// messages is; with the default every token is.
func TestBodyMinCount(t *testing.T) {
	ctx := context.Background()
	const (
		hdrHapax  = 101 // in one trained spam, as a header token
		bodyHapax = 102 // in one trained spam, in the body
		bodyTwice = 103 // in two trained spam, in the body
		neutral   = 104
	)
	store := NewMemStore()
	var ups []Update
	for i := range 20 {
		u := Update{Class: Ham, Digest: uint64(1 + i), Tokens: []uint64{neutral}}
		if i < 10 {
			u.Class = Spam
			switch i {
			case 0:
				u.Tokens = []uint64{hdrHapax, neutral, bodyHapax, bodyTwice}
				u.Header = 1
			case 1:
				u.Tokens = append(u.Tokens, bodyTwice)
			}
		}
		ups = append(ups, u)
	}
	if _, err := store.Apply(ctx, ups); err != nil {
		t.Fatal(err)
	}
	// the message: the header hapax in its header, the other two in its body
	msg, header := []uint64{hdrHapax, bodyHapax, bodyTwice}, 1
	clues := func(cfg Config) map[uint64]bool {
		t.Helper()
		c, err := New(cfg, store)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := c.ClassifyTokens(ctx, msg, header, true)
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint64]bool{}
		for _, cl := range sc.Clues {
			m[cl.Hash] = true
		}
		return m
	}
	if got := clues(Config{}); !got[hdrHapax] || !got[bodyHapax] || !got[bodyTwice] {
		t.Errorf("default: clues %v, want all three", got)
	}
	if got := clues(Config{BodyMinCount: 2}); !got[hdrHapax] || got[bodyHapax] || !got[bodyTwice] {
		t.Errorf("body_min_count 2: clues %v, want the header hapax and the body token seen twice", got)
	}
	if got := clues(Config{BodyMinCount: 3}); !got[hdrHapax] || got[bodyHapax] || got[bodyTwice] {
		t.Errorf("body_min_count 3: clues %v, want the header hapax only", got)
	}
	// min_count still applies to both
	if got := clues(Config{BodyMinCount: 2, MinCount: 2}); got[hdrHapax] || got[bodyHapax] || !got[bodyTwice] {
		t.Errorf("min_count 2: clues %v, want the body token seen twice only", got)
	}
}
