package ratelimit_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mail/portcullis/internal/redistest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/ratelimit"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func conn(ip string) *policy.Conn { return &policy.Conn{IP: netip.MustParseAddr(ip)} }

func intp(n int) *int { return &n }

// TestWindows: a window starts at a key's first event and lasts rate_time_unit; IPv6
// clients count per /64; zero turns a limit off.
func TestWindows(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l, err := ratelimit.New(ratelimit.Config{ClientMessageRateLimit: 2}, ratelimit.Deps{Now: clk.now, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := conn("2001:db8::1"), conn("2001:db8::2")
	if r := l.Count(ctx, ratelimit.Mail, a, ""); r != "" || a.Rate.Messages != 1 {
		t.Fatalf("%q %+v", r, a.Rate)
	}
	if r := l.Count(ctx, ratelimit.Mail, b, ""); r != "" || b.Rate.Messages != 2 {
		t.Fatalf("same /64: %q %+v", r, b.Rate)
	}
	if r := l.Count(ctx, ratelimit.Mail, a, ""); r != "450 4.7.1 Error: too much mail from 2001:db8::1" {
		t.Fatalf("over: %q", r)
	}
	if r := l.Count(ctx, ratelimit.Mail, conn("2001:db8:0:1::1"), ""); r != "" {
		t.Fatalf("another /64: %q", r)
	}
	clk.t = clk.t.Add(61 * time.Second)
	if r := l.Count(ctx, ratelimit.Mail, a, ""); r != "" || a.Rate.Messages != 1 {
		t.Fatalf("new window: %q %+v", r, a.Rate)
	}
	// Off limits are not counted.
	if r := l.Count(ctx, ratelimit.Rcpt, a, "x@y"); r != "" || a.Rate.Recipients != 0 {
		t.Fatalf("off: %q %+v", r, a.Rate)
	}
	// Trusted clients are exempt without explicit exceptions.
	tr := conn("192.0.2.1")
	tr.Trusted = true
	for range 5 {
		if r := l.Count(ctx, ratelimit.Mail, tr, ""); r != "" {
			t.Fatalf("trusted: %q", r)
		}
	}
}

// TestUserLimits: mox's per-user limits: messages per day, first-time recipients per day
// (a known recipient does not count, a refused one stays new).
func TestUserLimits(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l, err := ratelimit.New(ratelimit.Config{UserMessagesPerDay: intp(2), UserFirstTimeRecipientsPerDay: intp(2)}, ratelimit.Deps{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := conn("192.0.2.1")
	c.AuthUser = "joe"
	for i, rcpt := range []string{"a@x", "b@x", "A@x", "b@x"} {
		if r := l.Count(ctx, ratelimit.Rcpt, c, rcpt); r != "" {
			t.Fatalf("rcpt %d: %q", i, r)
		}
	}
	if r := l.Count(ctx, ratelimit.Rcpt, c, "c@x"); r == "" || c.Rate.UserRecipients != 3 {
		t.Fatalf("third new recipient: %q %+v", r, c.Rate)
	}
	if r := l.Count(ctx, ratelimit.Rcpt, c, "c@x"); r == "" {
		t.Fatal("a refused recipient became known")
	}
	l.Count(ctx, ratelimit.Mail, c, "")
	l.Count(ctx, ratelimit.Mail, c, "")
	if r := l.Count(ctx, ratelimit.Mail, c, ""); r != "450 4.7.1 Error: user joe sent more than 2 messages today, try again later" {
		t.Fatalf("messages: %q", r)
	}
	clk.t = clk.t.Add(25 * time.Hour)
	if r := l.Count(ctx, ratelimit.Mail, c, ""); r != "" {
		t.Fatalf("next day: %q", r)
	}
}

// TestSharedRedis: two limiters (two front-ends) sharing one Redis count together; when
// Redis dies they fall back to local counters without blocking.
func TestSharedRedis(t *testing.T) {
	srv := redistest.StartServer(t)
	var ls [2]*ratelimit.Limiter
	for i := range ls {
		l, err := ratelimit.New(ratelimit.Config{ClientConnectionRateLimit: 3, Redis: ratelimit.RedisConfig{Addr: srv.Addr, Timeout: 300 * time.Millisecond}}, ratelimit.Deps{Hostname: "mx.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls[i] = l
	}
	ctx := context.Background()
	for i := range 3 {
		if r := ls[i%2].Count(ctx, ratelimit.Connect, conn("192.0.2.9"), ""); r != "" {
			t.Fatalf("%d: %q", i, r)
		}
	}
	if r := ls[1].Count(ctx, ratelimit.Connect, conn("192.0.2.9"), ""); r != "421 4.7.0 mx.test Error: too many connections from 192.0.2.9" {
		t.Fatalf("shared count: %q", r)
	}
	srv.Kill()
	start := time.Now()
	for i := range 3 {
		if r := ls[0].Count(ctx, ratelimit.Connect, conn("192.0.2.10"), ""); r != "" {
			t.Fatalf("fallback %d: %q", i, r)
		}
	}
	if r := ls[0].Count(ctx, ratelimit.Connect, conn("192.0.2.10"), ""); r == "" {
		t.Fatal("the local fallback does not count")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("fallback took %v", d)
	}
}

// TestRuleFacts: the counts are client.rate.* in rules.
func TestRuleFacts(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{ClientMessageRateLimit: 100}, ratelimit.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	tempfail := "451 4.7.1 slow down"
	e, err := policy.NewEngine(policy.EngineConfig{Rules: []policy.RuleSpec{{Name: "busy", Stage: "mail", If: "client.rate.messages > 2", Tempfail: &tempfail}}})
	if err != nil {
		t.Fatal(err)
	}
	tx := policy.NewTransaction(*conn("192.0.2.1"))
	for i := 1; i <= 3; i++ {
		l.Count(context.Background(), ratelimit.Mail, &tx.Conn, "")
		d := e.Evaluate(context.Background(), policy.StageMail, tx)
		if d.Terminal() != (i == 3) {
			t.Fatalf("message %d: %+v", i, d)
		}
	}
}

func TestRedisCounter(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer c.Close()
	rc := ratelimit.NewRedisCounter(c, "t:")
	ctx := context.Background()
	for i := int64(1); i <= 3; i++ {
		if n, err := rc.Incr(ctx, "k", time.Minute); err != nil || n != i {
			t.Fatalf("%d %v", n, err)
		}
	}
	if ttl := c.PTTL(ctx, "t:k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("ttl %v", ttl)
	}
	if ok, _ := rc.FirstTime(ctx, "s", "a", time.Hour); !ok {
		t.Fatal("first")
	}
	if ok, _ := rc.FirstTime(ctx, "s", "a", time.Hour); ok {
		t.Fatal("second")
	}
}
