package ratelimit_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/redistest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/ratelimit"
)

// BenchmarkCountRcpt is the cost the rate limits add to one RCPT of an authenticated
// client (the client's recipient rate and the user's first-time recipients), over 1000
// client addresses (targets: under 50µs in memory, under 1ms with Redis on loopback).
func BenchmarkCountRcpt(b *testing.B) {
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			many := 1 << 30
			cfg := ratelimit.Config{ClientRecipientRateLimit: many, ClientMessageRateLimit: many, UserFirstTimeRecipientsPerDay: &many}
			if name == "redis" {
				cfg.Redis.Addr = redistest.Start(b)
			}
			l, err := ratelimit.New(cfg, ratelimit.Deps{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			conns := make([]policy.Conn, 1000)
			for i := range conns {
				conns[i] = policy.Conn{IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), AuthUser: fmt.Sprintf("user%d", i%50)}
			}
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				if r := l.Count(ctx, ratelimit.Rcpt, &conns[i%1000], fmt.Sprintf("r%d@example.org", i%300)); r != "" {
					b.Fatal(r)
				}
			}
		})
	}
}
