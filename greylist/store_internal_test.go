package greylist

import (
	"context"
	"fmt"
	"testing"
)

// A flood of new triplets and clients from many addresses, all within the retry window
// (so no sweep drops them), must not grow a MemoryStore past its bound.
func TestMemoryStoreBounded(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	m.max = 100
	p := Params{Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400, AutoAllowInterval: 3600}
	for i := range 1000 {
		key := fmt.Sprintf("192.0.2.%d/a@b/c@d", i)
		if _, _, err := m.Triplet(ctx, key, 1000, p); err != nil {
			t.Fatal(err)
		}
		if err := m.ClientPassed(ctx, fmt.Sprint(i), 1000, p); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.triplets) > 100 || len(m.clients) > 100 {
		t.Fatalf("%d triplets and %d clients kept, want at most 100 each", len(m.triplets), len(m.clients))
	}
	// A known triplet is still updated in place when the store is full.
	var known string
	for k := range m.triplets {
		known = k
		break
	}
	if _, _, err := m.Triplet(ctx, known, 1400, p); err != nil {
		t.Fatal(err)
	}
	if e := m.triplets[known]; e.Last != 1400 || e.First != 1000 {
		t.Fatalf("known triplet %+v after its retry, want First 1000 Last 1400", e)
	}
}

// While the file refuses writes (a full disk, here a trigger), the changes kept for the
// next flush stay bounded under a flood of new triplets.
func TestSQLiteStoreDirtyBoundedWhenWritesFail(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/greylist.sqlite"
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Flush by hand only: stop the store's flusher (Close finds it stopped).
	close(s.stop)
	<-s.done
	s.stop = make(chan struct{})
	s.maxDirty = 50
	if _, err := s.db.Exec(`CREATE TRIGGER full BEFORE INSERT ON triplets BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	p := Params{Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400, AutoAllowInterval: 3600}
	for i := range 500 {
		if _, _, err := s.Triplet(ctx, fmt.Sprintf("192.0.2.%d/a@b/c@d", i), 1000, p); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			if err := s.Flush(); err == nil {
				t.Fatal("Flush succeeded through the trigger")
			}
		}
	}
	s.Flush()
	s.mu.Lock()
	n := len(s.dirtyT)
	s.mu.Unlock()
	if n > 50 {
		t.Fatalf("%d changes kept after failed writes, want at most 50", n)
	}
}
