package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

// BenchmarkMessagesRead reads the index rows of a 2,000-message folder (what SELECT,
// SEARCH and FETCH 1:* do), half of the dates in their own zones: the cost of giving each
// row its zone (one cached *time.Location per offset).
func BenchmarkMessagesRead(b *testing.B) {
	ctx := context.Background()
	s, err := New(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	u, err := s.Open(ctx, "bench@example.org")
	if err != nil {
		b.Fatal(err)
	}
	defer u.Release()
	const n = 2000
	var ps []*Prepared
	for i := range n {
		d := time.Unix(1e9+int64(i)*3600, 0)
		if i%2 == 0 {
			d = d.In(time.FixedZone("", (i%28-14)*3600))
		}
		p, err := u.Prepare(ctx, "INBOX", strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil, d, 0)
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	if _, errs := u.CommitPrepared(ctx, ps); errs[0] != nil {
		b.Fatal(errs[0])
	}
	b.ResetTimer()
	for b.Loop() {
		if _, ms, err := u.Messages(ctx, "INBOX"); err != nil || len(ms) != n {
			b.Fatalf("%d messages, %v", len(ms), err)
		}
	}
}
