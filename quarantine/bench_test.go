package quarantine

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkList is one page view of a user's quarantine when the queue holds n
// quarantined messages for 100 users: the scan reads every envelope and status (headers
// are cached after the first view).
func BenchmarkList(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a, sp := newAreaB(b)
			for i := range n {
				quarantinedB(b, sp, fmt.Sprintf("user%d@example.test", i%100))
			}
			ctx := context.Background()
			mine := func(r string) bool { return r == "user7@example.test" }
			if items, err := a.List(ctx, mine); err != nil || len(items) != n/100 {
				b.Fatalf("List: %d items, %v", len(items), err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := a.List(ctx, mine); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
