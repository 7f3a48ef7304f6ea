package redisclient

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The breaker's settings: after Failures consecutive failures the circuit is open for
// Open.
const (
	Failures = 3
	Open     = 5 * time.Second
)

// ErrOpen is the error of a call made while the circuit is open.
var ErrOpen = errors.New("redis: not asked: the circuit is open after repeated failures")

// Options name a Redis server. Addr is host:port, or a unix socket path (starting
// with "/"); Timeout bounds the dial, each read and write, and the wait for a pooled
// connection.
type Options struct {
	Addr, Username, Password string
	DB                       int
	Timeout                  time.Duration
}

// New returns a client for o with a circuit breaker. It does no I/O.
func New(o Options) *redis.Client {
	return newClient(o, newBreaker(time.Now))
}

func newClient(o Options, b *breaker) *redis.Client {
	network := "tcp"
	if strings.HasPrefix(o.Addr, "/") {
		network = "unix"
	}
	c := redis.NewClient(&redis.Options{Network: network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout, PoolTimeout: o.Timeout,
		MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true})
	c.AddHook(b)
	return c
}

// breaker is the circuit breaker, a go-redis hook around every command and pipeline.
type breaker struct {
	now func() time.Time

	mu        sync.Mutex
	fails     int
	openUntil time.Time // zero: closed
	probing   bool      // a probe is out
}

func newBreaker(now func() time.Time) *breaker { return &breaker{now: now} }

// allow says whether a call may go to the server; probe: it is the one call let through
// after the open period.
func (b *breaker) allow() (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.IsZero() {
		return false, nil
	}
	if b.probing || b.now().Before(b.openUntil) {
		return false, ErrOpen
	}
	b.probing = true
	return true, nil
}

// done records the outcome of a call that allow let through.
func (b *breaker) done(probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if !failure(err) {
		b.fails, b.openUntil = 0, time.Time{}
		return
	}
	b.fails++
	if probe || b.fails >= Failures {
		b.fails, b.openUntil = 0, b.now().Add(Open)
	}
}

// failure reports whether err says the server did not answer in time or at all. A
// reply (redis.Nil, an error reply such as NOSCRIPT) is no failure, nor is a call its
// caller cancelled.
func failure(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	return !errors.As(err, &re)
}

func (b *breaker) DialHook(next redis.DialHook) redis.DialHook { return next }

// inCall marks the context of a call the breaker let through: go-redis runs a new
// connection's handshake (HELLO, AUTH, SELECT) through the same hooks with the caller's
// context, and it is part of that call, not another one.
type inCall struct{}

func (b *breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(inCall{}) != nil {
			return next(ctx, cmd)
		}
		probe, err := b.allow()
		if err != nil {
			cmd.SetErr(err)
			return err
		}
		err = next(context.WithValue(ctx, inCall{}, true), cmd)
		b.done(probe, err)
		return err
	}
}

func (b *breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(inCall{}) != nil {
			return next(ctx, cmds)
		}
		probe, err := b.allow()
		if err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		err = next(context.WithValue(ctx, inCall{}, true), cmds)
		b.done(probe, err)
		return err
	}
}
