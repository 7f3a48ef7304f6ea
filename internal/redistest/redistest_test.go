package redistest_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mail/portcullis/internal/redistest"
)

func TestStart(t *testing.T) {
	s := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("%q %v", v, err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("a killed server answered")
	}
}

func Example() {
	// In a test: addr := redistest.Start(t)
	// client := redis.NewClient(&redis.Options{Addr: addr})
}
