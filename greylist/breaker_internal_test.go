package greylist

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/redisclient"
	"github.com/portcullis-mail/portcullis/internal/redistest"
)

// TestRedisBreaker: the Redis store's client has the circuit breaker: with the server
// hung (SIGSTOP), a few calls time out, then the store fails at once (and on_error
// decides), instead of a timeout per recipient.
func TestRedisBreaker(t *testing.T) {
	srv := redistest.StartServer(t)
	p, err := New(Config{Store: "redis", Redis: RedisConfig{Addr: srv.Addr}, Timeout: 200 * time.Millisecond},
		Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if _, _, err := p.store.Triplet(ctx, "k", 1000, p.p); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	for range redisclient.Failures + 1 {
		if _, _, err = p.store.Triplet(ctx, "k", 1000, p.p); errors.Is(err, redisclient.ErrOpen) {
			return
		}
	}
	t.Fatalf("the circuit did not open after %d failures: %v", redisclient.Failures, err)
}
