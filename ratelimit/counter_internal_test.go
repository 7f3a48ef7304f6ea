package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A flood from many addresses, each opening a window of its own within the hour, must
// not grow a MemoryCounter past its bound.
func TestMemoryCounterBounded(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	m := NewMemoryCounter(func() time.Time { return now })
	m.maxKeys = 100
	for i := range 1000 {
		if _, err := m.Incr(ctx, fmt.Sprintf("conn/2001:db8::%x", i), time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := m.FirstTime(ctx, fmt.Sprintf("rcpts/u%d", i), "a@b", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.windows) > 100 || len(m.sets) > 100 {
		t.Fatalf("%d windows and %d sets kept, want at most 100 each", len(m.windows), len(m.sets))
	}
	// A key still held counts on when the counter is full.
	var known string
	for k := range m.windows {
		known = k
		break
	}
	if n, err := m.Incr(ctx, known, time.Hour); err != nil || n != 2 {
		t.Fatalf("Incr of a kept key = %d, %v; want 2", n, err)
	}
}
