package redisclient

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/redistest"
)

// fakeClock is the breaker's clock, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestBreakerHungServer: a real redis-server, stopped (SIGSTOP): the first calls time
// out, after Failures of them the circuit opens and calls fail at once with ErrOpen
// without reaching the server; after Open one probe goes out: while the server still
// hangs it opens the circuit again, once the server is back it closes it.
func TestBreakerHungServer(t *testing.T) {
	srv := redistest.StartServer(t)
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	c := newClient(Options{Addr: srv.Addr, Timeout: 300 * time.Millisecond}, newBreaker(clock.now))
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// An error reply is no failure.
	for range Failures + 1 {
		if err := c.Do(ctx, "NOSUCHCOMMAND").Err(); err == nil || errors.Is(err, ErrOpen) {
			t.Fatalf("an error reply: %v", err)
		}
	}
	srv.Pause()
	defer srv.Resume()
	// Each call that hangs is a failure (a new connection's handshake, which go-redis
	// runs through the same hooks, is one too): at most Failures calls wait.
	timeouts := 0
	for {
		err := c.Get(ctx, "k").Err()
		if errors.Is(err, ErrOpen) {
			break
		}
		if err == nil {
			t.Fatal("the hung server answered")
		}
		if timeouts++; timeouts > Failures {
			t.Fatalf("%d calls timed out and the circuit is still closed", timeouts)
		}
	}
	if timeouts == 0 {
		t.Fatal("the circuit opened before any failure")
	}
	for range 10 {
		if err := c.Get(ctx, "k").Err(); !errors.Is(err, ErrOpen) {
			t.Fatalf("with the circuit open: %v, want ErrOpen", err)
		}
	}
	// After Open, one probe: still hung, so open again at once.
	clock.add(Open)
	if err := c.Get(ctx, "k").Err(); err == nil || errors.Is(err, ErrOpen) {
		t.Fatalf("the probe: %v, want a timeout", err)
	}
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, ErrOpen) {
		t.Fatalf("after a failed probe: %v, want ErrOpen", err)
	}
	// The server is back: the next probe closes the circuit.
	srv.Resume()
	clock.add(Open)
	for i := range 5 {
		// The first call may read the hung calls' late replies on a pooled
		// connection; go-redis discards such connections, so retry a little.
		v, err := c.Get(ctx, "k").Result()
		if err == nil && v == "v" {
			break
		}
		if i == 4 {
			t.Fatalf("after the server came back: %q %v", v, err)
		}
		clock.add(Open)
	}
	for range 5 {
		if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
			t.Fatalf("with the circuit closed: %q %v", v, err)
		}
	}
}

// TestBreakerPipeline: a pipeline counts as one call.
func TestBreakerPipeline(t *testing.T) {
	b := newBreaker(time.Now)
	b.openUntil = time.Now().Add(time.Hour)
	c := newClient(Options{Addr: "127.0.0.1:1", Timeout: time.Second}, b)
	defer c.Close()
	p := c.Pipeline()
	get := p.Get(context.Background(), "k")
	if _, err := p.Exec(context.Background()); !errors.Is(err, ErrOpen) || !errors.Is(get.Err(), ErrOpen) {
		t.Fatalf("pipeline with the circuit open: %v %v", err, get.Err())
	}
}
