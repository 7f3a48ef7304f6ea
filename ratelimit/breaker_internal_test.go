package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/redisclient"
	"github.com/portcullis-mail/portcullis/internal/redistest"
	"github.com/portcullis-mail/portcullis/policy"
)

// TestRedisBreaker: the limiter's Redis client has the circuit breaker: with the
// server hung (SIGSTOP), a few calls time out and then the shared counter fails at
// once, while Count goes on counting locally.
func TestRedisBreaker(t *testing.T) {
	srv := redistest.StartServer(t)
	l, err := New(Config{ClientMessageRateLimit: 2, Redis: RedisConfig{Addr: srv.Addr, Timeout: 200 * time.Millisecond}},
		Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if _, err := l.counter.Incr(ctx, "probe", time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	opened := false
	for range redisclient.Failures + 1 {
		if _, err := l.counter.Incr(ctx, "probe", time.Minute); errors.Is(err, redisclient.ErrOpen) {
			opened = true
			break
		}
	}
	if !opened {
		t.Fatalf("the circuit did not open after %d failures", redisclient.Failures)
	}
	c := &policy.Conn{IP: netip.MustParseAddr("2001:db8::1")}
	for i, want := range []string{"", "", "450 4.7.1 Error: too much mail from 2001:db8::1"} {
		if got := l.Count(ctx, Mail, c, ""); got != want {
			t.Errorf("message %d with the circuit open: %q, want %q", i+1, got, want)
		}
	}
}
