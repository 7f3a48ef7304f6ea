package groupsync

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gated is a sync function whose calls each wait for a release, so a test can hold an
// fsync running while it makes more requests.
type gated struct {
	fail    map[int32]error // the result of some calls, by number
	calls   atomic.Int32
	started chan int32    // the number of each call, as it starts
	release chan struct{} // one value lets one call finish
}

func newGated() *gated {
	return &gated{started: make(chan int32, 100), release: make(chan struct{})}
}

func (g *gated) fn() error {
	n := g.calls.Add(1)
	g.started <- n
	<-g.release
	return g.fail[n]
}

func waitStarted(t *testing.T, g *gated, want int32) {
	t.Helper()
	select {
	case n := <-g.started:
		if n != want {
			t.Fatalf("call %d started, want %d", n, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("call %d never started", want)
	}
}

// waitNext waits until n callers wait for the next call.
func waitNext(t *testing.T, s *Syncer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		w := 0
		if s.next != nil {
			w = s.next.callers
		}
		s.mu.Unlock()
		if w == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for the next call, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func returned(ch chan error) bool {
	select {
	case <-ch:
		return true
	case <-time.After(20 * time.Millisecond):
		return false
	}
}

// goSync calls Sync n times in goroutines; the results come on the channel.
func goSync(s *Syncer, n int) chan error {
	ch := make(chan error, n)
	for range n {
		go func() { ch <- s.Sync() }()
	}
	return ch
}

// running returns a Syncer around a gated function whose first call is running, made
// by the caller whose result comes on first, and n callers waiting for the next call.
func running(t *testing.T, fail map[int32]error, n int) (g *gated, s *Syncer, first, waiting chan error) {
	t.Helper()
	g = newGated()
	g.fail = fail
	s = New(g.fn)
	first = goSync(s, 1)
	waitStarted(t, g, 1)
	waiting = goSync(s, n)
	waitNext(t, s, n)
	return g, s, first, waiting
}

// A request that arrives while an fsync runs waits for the next one: the running one
// may have started before the caller's change.
func TestRequestDuringSyncWaitsForNext(t *testing.T) {
	g, _, first, second := running(t, nil, 1)
	g.release <- struct{}{} // call 1 ends
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitStarted(t, g, 2)
	if returned(second) {
		t.Fatal("a request made during call 1 returned when call 1 ended")
	}
	g.release <- struct{}{} // call 2 ends
	if err := <-second; err != nil {
		t.Fatal(err)
	}
}

// The requests that arrive during one fsync share the next one.
func TestGroupCommit(t *testing.T) {
	const n = 20
	g, s, first, waiting := running(t, nil, n)
	g.release <- struct{}{}
	waitStarted(t, g, 2)
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-waiting; err != nil {
			t.Fatal(err)
		}
	}
	if c := g.calls.Load(); c != 2 || s.Calls() != 2 {
		t.Fatalf("%d calls (Calls %d) for %d requests, want 2", c, s.Calls(), n+1)
	}
}

// Every caller returns after a call that started after its change, whatever the
// interleaving (run with -race).
func TestDurability(t *testing.T) {
	var version, durable atomic.Int64 // the latest change, and what the last call covered
	s := New(func() error {
		v := version.Load()
		time.Sleep(50 * time.Microsecond)
		durable.Store(v)
		return nil
	})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				mine := version.Add(1)
				if err := s.Sync(); err != nil {
					t.Error(err)
					return
				}
				if d := durable.Load(); d < mine {
					t.Errorf("change %d returned with %d durable", mine, d)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A failure reaches every caller the failed call served, and no caller served by a
// later call.
func TestError(t *testing.T) {
	boom := errors.New("boom")
	const n = 5
	g, s, first, waiting := running(t, map[int32]error{2: boom}, n)
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("call 1: %v", err)
	}
	waitStarted(t, g, 2)
	g.release <- struct{}{}
	for range n {
		if err := <-waiting; err != boom {
			t.Fatalf("a caller served by the failed call got %v", err)
		}
	}
	later := goSync(s, 1)
	waitStarted(t, g, 3)
	g.release <- struct{}{}
	if err := <-later; err != nil {
		t.Fatalf("a caller served by a good call after a failed one got %v", err)
	}
}

// Close waits for the callers being served, those waiting for the next call too; Sync
// after Close fails.
func TestClose(t *testing.T) {
	g, s, first, second := running(t, nil, 1)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	for call := int32(1); call <= 2; call++ {
		select {
		case <-closed:
			t.Fatalf("Close returned during call %d", call)
		case <-time.After(20 * time.Millisecond):
		}
		if call == 2 {
			waitStarted(t, g, 2)
		}
		g.release <- struct{}{}
	}
	<-closed
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Sync after Close = %v", err)
	}
	s.Close() // twice is fine
}
