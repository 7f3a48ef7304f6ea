package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeAuth accepts one password per user and counts calls.
type fakeAuth struct {
	mu       sync.Mutex
	users    map[string]string
	calls    int
	downFrom bool
}

func (f *fakeAuth) Authenticate(_ context.Context, user, pw string, _ netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.downFrom {
		return "", fmt.Errorf("fake: %w", ErrUnavailable)
	}
	want, ok := f.users[user]
	switch {
	case !ok:
		return "", ErrUnknownUser
	case pw != want:
		return "", fmt.Errorf("%w: wrong password", ErrInvalid)
	}
	return user, nil
}

// clock is a manual clock; sleeps advance nothing but are recorded.
type clock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
func (c *clock) Sleep(_ context.Context, d time.Duration) {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.mu.Unlock()
}

func newThrottle(t *testing.T, next Authenticator, cfg ThrottleConfig) (*Throttle, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now, cfg.Sleep = c.Now, c.Sleep
	th, err := NewThrottle(next, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return th, c
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
	ip3 = netip.MustParseAddr("198.51.100.7")
)

func TestThrottlePerUser(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice": "pw", "bob": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{MaxFailuresPerIP: -1})

	// 4 failures from different addresses: still allowed.
	for i := range 4 {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if _, err := th.Authenticate(ctx, "alice", "bad", ip); !errors.Is(err, ErrInvalid) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := th.Authenticate(ctx, "alice", "pw", ip1); err != nil {
		t.Fatalf("right password after 4 failures: %v", err) // and this resets alice
	}
	for range 5 {
		th.Authenticate(ctx, "alice", "bad", ip2)
	}
	// Locked: even the right password gets ErrThrottled, and the backend is not asked.
	calls := f.calls
	if _, err := th.Authenticate(ctx, "alice", "pw", ip2); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after 5 failures: %v", err)
	}
	if f.calls != calls {
		t.Fatal("backend asked while locked")
	}
	// Other users are not affected.
	if _, err := th.Authenticate(ctx, "bob", "pw", ip2); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// An address alice logged in from before stays allowed (ip1 succeeded above).
	if _, err := th.Authenticate(ctx, "alice", "pw", ip1); err != nil {
		t.Fatalf("alice from her trusted address: %v", err)
	}
	for range 5 {
		th.Authenticate(ctx, "alice", "bad", ip2)
	}
	// The user name is matched case-insensitively.
	if _, err := th.Authenticate(ctx, "ALICE", "pw", ip3); !errors.Is(err, ErrThrottled) {
		t.Fatalf("ALICE: %v", err)
	}
	// The lockout lasts 1 minute after the 5th failure.
	clk.Advance(59 * time.Second)
	if _, err := th.Authenticate(ctx, "alice", "pw", ip3); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after 59s: %v", err)
	}
	clk.Advance(2 * time.Second)
	if _, err := th.Authenticate(ctx, "alice", "bad", ip3); !errors.Is(err, ErrInvalid) {
		t.Fatalf("after 61s: %v", err)
	}
	// The 6th failure in the window doubles the lockout: 2 minutes.
	clk.Advance(119 * time.Second)
	if _, err := th.Authenticate(ctx, "alice", "pw", ip3); !errors.Is(err, ErrThrottled) {
		t.Fatalf("second lockout after 119s: %v", err)
	}
	clk.Advance(2 * time.Second)
	if _, err := th.Authenticate(ctx, "alice", "pw", ip3); err != nil {
		t.Fatalf("after the second lockout: %v", err)
	}
}

func TestThrottleExponentialAndCapped(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{MaxFailuresPerIP: -1, MaxFailuresPerUser: 3, Window: 24 * time.Hour, Lockout: time.Minute, MaxLockout: 10 * time.Minute})
	var got []time.Duration
	for range 8 {
		// Fail, then measure the lockout by probing minute by minute.
		if _, err := th.Authenticate(ctx, "alice", "bad", ip3); !errors.Is(err, ErrInvalid) {
			t.Fatalf("fail: %v", err)
		}
		d := time.Duration(0)
		for {
			if _, ok := th.locked(th.keys("alice", ip3)); ok {
				break
			}
			clk.Advance(time.Minute)
			d += time.Minute
		}
		got = append(got, d)
	}
	want := []time.Duration{0, 0, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lockouts %v, want %v", got, want)
	}
}

func TestThrottlePerIP(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{MaxFailuresPerIP: 3, MaxFailuresPerUser: -1, Exempt: []string{"10.0.0.0/8"}})
	// Password spraying: one address, many users.
	for _, u := range []string{"u1", "u2", "u3"} {
		th.Authenticate(ctx, u, "x", ip1)
	}
	if _, err := th.Authenticate(ctx, "alice", "pw", ip1); !errors.Is(err, ErrThrottled) {
		t.Fatalf("sprayer: %v", err)
	}
	if _, err := th.Authenticate(ctx, "alice", "pw", ip2); err != nil {
		t.Fatalf("other address: %v", err)
	}
	// A success from the locked address's neighbour does not unlock it; time does.
	clk.Advance(61 * time.Second)
	if _, err := th.Authenticate(ctx, "alice", "pw", ip1); err != nil {
		t.Fatalf("after lockout: %v", err)
	}
	// IPv6 clients are grouped by /64.
	a := netip.MustParseAddr("2001:db8:1:2::1")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::9")
	c := netip.MustParseAddr("2001:db8:1:3::1")
	for i := range 3 {
		th.Authenticate(ctx, fmt.Sprint("v", i), "x", a)
	}
	if _, err := th.Authenticate(ctx, "alice", "pw", b); !errors.Is(err, ErrThrottled) {
		t.Fatalf("same /64: %v", err)
	}
	if _, err := th.Authenticate(ctx, "alice", "pw", c); err != nil {
		t.Fatalf("other /64: %v", err)
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	for i := range 3 {
		th.Authenticate(ctx, fmt.Sprint("w", i), "x", netip.MustParseAddr("::ffff:192.0.2.77"))
	}
	if _, err := th.Authenticate(ctx, "alice", "pw", netip.MustParseAddr("192.0.2.77")); !errors.Is(err, ErrThrottled) {
		t.Fatalf("mapped address: %v", err)
	}
	// Exempt networks are never locked.
	w := netip.MustParseAddr("10.1.2.3")
	for i := range 10 {
		th.Authenticate(ctx, fmt.Sprint("x", i), "x", w)
	}
	if _, err := th.Authenticate(ctx, "alice", "pw", w); err != nil {
		t.Fatalf("exempt: %v", err)
	}
}

func TestThrottleDoesNotCount(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{MaxFailuresPerUser: 2})
	// Successes never count.
	for range 50 {
		if _, err := th.Authenticate(ctx, "alice", "pw", ip1); err != nil {
			t.Fatal(err)
		}
	}
	// Backend outages do not count either.
	f.downFrom = true
	for range 10 {
		if _, err := th.Authenticate(ctx, "alice", "bad", ip1); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	}
	f.downFrom = false
	if _, err := th.Authenticate(ctx, "alice", "pw", ip2); err != nil {
		t.Fatal(err)
	}
	// Failures outside the window are forgotten.
	th.Authenticate(ctx, "alice", "bad", ip2)
	clk.Advance(11 * time.Minute)
	th.Authenticate(ctx, "alice", "bad", ip2)
	if _, err := th.Authenticate(ctx, "alice", "pw", ip2); err != nil {
		t.Fatalf("failures 11 minutes apart: %v", err)
	}
	// Failed and throttled answers are delayed; successes are not.
	clk.mu.Lock()
	slept := len(clk.slept)
	d := clk.slept[0]
	clk.mu.Unlock()
	if slept != 2 || d != 2*time.Second {
		t.Fatalf("slept %d times (%v), want 2 × 2s", slept, d)
	}
}

func TestThrottleDelayWithinDeadline(t *testing.T) {
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{FailureDelay: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	th.Authenticate(ctx, "alice", "bad", ip1)
	if d := clk.slept[0]; d > 500*time.Millisecond {
		t.Fatalf("delay %v beyond half the deadline", d)
	}
}

func TestThrottleBoundedMemory(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{}}
	th, clk := newThrottle(t, f, ThrottleConfig{MaxEntries: 100})
	for i := range 1000 {
		th.Authenticate(ctx, fmt.Sprint("user", i), "x", netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		if n := th.Len(); n > 100 {
			t.Fatalf("%d entries after %d attempts", n, i)
		}
	}
	// Stale entries go away by themselves as new attempts arrive.
	clk.Advance(2 * time.Hour)
	for range 30 {
		th.Authenticate(ctx, "alice", "x", ip1)
	}
	if n := th.Len(); n > 5 {
		t.Fatalf("%d entries after the window passed", n)
	}
}

// blockingAuth fails every attempt, but only when released, and counts attempts that
// reached it.
type blockingAuth struct {
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (b *blockingAuth) Authenticate(ctx context.Context, _, _ string, _ netip.Addr) (string, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	<-b.release
	return "", ErrInvalid
}

// TestThrottleParallelBurst: 20 parallel guesses for one user cannot all be checked
// before the failures count.
func TestThrottleParallelBurst(t *testing.T) {
	b := &blockingAuth{release: make(chan struct{})}
	th, _ := newThrottle(t, b, ThrottleConfig{MaxFailuresPerIP: -1, MaxFailuresPerUser: 5, FailureDelay: -1})
	var wg sync.WaitGroup
	results := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := th.Authenticate(context.Background(), "alice", "guess", netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
			results <- err
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Release the backend's answers one at a time until every attempt has returned
	// (refused attempts never reach the backend).
	for stop := false; !stop; {
		select {
		case b.release <- struct{}{}:
		case <-done:
			stop = true
		}
	}
	close(results)
	throttled := 0
	for err := range results {
		if errors.Is(err, ErrThrottled) {
			throttled++
		}
	}
	b.mu.Lock()
	calls := b.calls
	b.mu.Unlock()
	// With 2 attempts at a time, the lock takes effect at most one attempt late.
	if calls > 6 || throttled != 20-calls {
		t.Fatalf("%d attempts reached the backend, %d throttled", calls, throttled)
	}
	th.mu.Lock()
	gates := len(th.gates)
	th.mu.Unlock()
	if gates != 0 {
		t.Fatalf("%d gates left", gates)
	}
}
