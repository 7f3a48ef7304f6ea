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

// fakeAuth accepts one password per user, counts calls and records when each check
// ran on the clock it is given.
type fakeAuth struct {
	mu       sync.Mutex
	users    map[string]string
	calls    int
	at       []time.Time
	clock    *clock
	downFrom bool
}

func (f *fakeAuth) Authenticate(_ context.Context, user, pw string, _ netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.clock != nil {
		f.at = append(f.at, f.clock.Now())
	}
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

func (f *fakeAuth) Calls() int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

// clock is a manual clock; a sleep advances it by its duration (as if the caller had
// really waited, unless frozen) and is recorded.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	frozen bool
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
	if !c.frozen {
		c.now = c.now.Add(d)
	}
	c.mu.Unlock()
}

// Slept returns the sleeps recorded since the n-th.
func (c *clock) Slept(n int) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept[n:]...)
}

func (c *clock) Sleeps() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.slept) }

func newThrottle(t *testing.T, next Authenticator, cfg ThrottleConfig) (*Throttle, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if f, ok := next.(*fakeAuth); ok {
		f.clock = c
	}
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

// TestThrottleOwnerNotLockedOut is the attack of issue 15 item 8: an attacker who knows
// the address makes 1,000 failures for it from one network; the owner's first login
// from a network never seen before succeeds at once, while the attacker's guesses are
// slowed to one per MaxFailureDelay.
func TestThrottleOwnerNotLockedOut(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice@example.test": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{})
	start := clk.Now()
	for i := range 1000 {
		_, err := th.Authenticate(ctx, "alice@example.test", fmt.Sprint("guess", i), ip3)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// Five guesses at the failure delay (2s), then 4s, 8s, and 15s for every other one.
	if took, least := clk.Now().Sub(start), 992*15*time.Second; took < least {
		t.Fatalf("1000 guesses took %v, want at least %v", took, least)
	}
	// However many failures, an entry keeps only the failure times that can still change
	// an answer: up to the limit and until the penalty reaches its cap (2 doublings).
	th.mu.Lock()
	for key, el := range th.entries {
		if n := len(el.Value.(*tentry).fails); n > 23 || key[0] == 'p' && n > 8 {
			t.Errorf("%q keeps %d failure times", key, n)
		}
	}
	th.mu.Unlock()
	// The owner, from a new network, with the attacker's penalty in force: no wait at all,
	// even within a tight deadline, and the backend is asked.
	sleeps, now, calls := clk.Sleeps(), clk.Now(), f.Calls()
	tight, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if got, err := th.Authenticate(tight, "alice@example.test", "pw", ip1); err != nil || got != "alice@example.test" {
		t.Fatalf("owner from a new network: %q, %v", got, err)
	}
	if d := clk.Slept(sleeps); len(d) != 0 || !clk.Now().Equal(now) || f.Calls() != calls+1 {
		t.Fatalf("owner waited %v", d)
	}
	// A typo of the owner there is an ordinary failure, not a throttled attempt.
	if _, err := th.Authenticate(ctx, "alice@example.test", "typo", ip1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("owner's typo: %v", err)
	}
	// The attacker is still slowed: its next attempt waits out the penalty first.
	sleeps = clk.Sleeps()
	th.Authenticate(ctx, "alice@example.test", "guess", ip3)
	if d := clk.Slept(sleeps); len(d) != 2 || d[0] != 11*time.Second || d[1] != 2*time.Second {
		t.Fatalf("attacker's next guess slept %v, want [11s 2s] (15s less the 4s that passed, then the delay)", d)
	}
}

// TestThrottlePenaltyDoublesAndCaps: a client guessing one after the other from one
// network checks a password every FailureDelay until the limit, then every 4s, 8s, 15s
// (twice the delay, doubling, capped); waiting longer costs nothing more; the window
// forgets.
func TestThrottlePenaltyDoublesAndCaps(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{})
	guess := func() {
		t.Helper()
		if _, err := th.Authenticate(ctx, "alice", "bad", ip3); !errors.Is(err, ErrInvalid) {
			t.Fatal(err)
		}
	}
	for range 10 {
		guess()
	}
	var got []time.Duration
	for i := 1; i < len(f.at); i++ {
		got = append(got, f.at[i].Sub(f.at[i-1]))
	}
	s := time.Second
	want := []time.Duration{2 * s, 2 * s, 2 * s, 2 * s, 4 * s, 8 * s, 15 * s, 15 * s, 15 * s}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("intervals between checks %v, want %v", got, want)
	}
	// A client that waits longer than the penalty by itself is not delayed further.
	clk.Advance(time.Minute)
	sleeps := clk.Sleeps()
	guess()
	if d := clk.Slept(sleeps); fmt.Sprint(d) != "[2s]" {
		t.Fatalf("after a minute: slept %v, want only the failure delay", d)
	}
	// Failures older than the window are forgotten: no penalty any more.
	clk.Advance(11 * time.Minute)
	n := len(f.at)
	guess()
	guess()
	if d := f.at[n+1].Sub(f.at[n]); d != 2*s {
		t.Fatalf("after the window: %v between checks", d)
	}
}

// TestThrottleNetworkLimit: a network over max_failures_per_ip (password spraying, one
// guess per user) is slowed for all its users; other networks are not; a success from
// it does not reset it. IPv6 counts by /64, IPv4-mapped addresses as IPv4, and exempt
// networks have no network counter but still their pairs.
func TestThrottleNetworkLimit(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice": "pw", "bob": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{MaxFailuresPerIP: 3, Exempt: []string{"10.0.0.0/8"}})
	waits := func(user, pw string, ip netip.Addr) (time.Duration, error) {
		t.Helper()
		before := clk.Now()
		n := len(f.at)
		_, err := th.Authenticate(ctx, user, pw, ip)
		if len(f.at) == n {
			return 0, fmt.Errorf("not checked: %w", err)
		}
		return f.at[n].Sub(before), err
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		th.Authenticate(ctx, u, "x", ip1)
	}
	// The 3rd failure was 2s ago (its answer's delay): 4s after it, alice's turn.
	if d, err := waits("alice", "pw", ip1); err != nil || d != 2*time.Second {
		t.Fatalf("alice from the spraying network: waited %v, %v", d, err)
	}
	if d, err := waits("bob", "pw", ip2); err != nil || d != 0 {
		t.Fatalf("bob from another network: waited %v, %v", d, err)
	}
	// Alice's success did not reset the network: its next failure doubles the penalty.
	th.Authenticate(ctx, "u4", "x", ip1)
	if d, err := waits("bob", "pw", ip1); err != nil || d != 6*time.Second {
		t.Fatalf("after the 4th failure: waited %v, %v", d, err)
	}

	// IPv6 clients are grouped by /64.
	a := netip.MustParseAddr("2001:db8:1:2::1")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::9")
	c := netip.MustParseAddr("2001:db8:1:3::1")
	for i := range 3 {
		th.Authenticate(ctx, fmt.Sprint("v", i), "x", a)
	}
	if d, err := waits("alice", "pw", b); err != nil || d == 0 {
		t.Fatalf("same /64: waited %v, %v", d, err)
	}
	if d, err := waits("alice", "pw", c); err != nil || d != 0 {
		t.Fatalf("other /64: waited %v, %v", d, err)
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	for i := range 3 {
		th.Authenticate(ctx, fmt.Sprint("w", i), "x", netip.MustParseAddr("::ffff:192.0.2.77"))
	}
	if d, err := waits("alice", "pw", netip.MustParseAddr("192.0.2.77")); err != nil || d == 0 {
		t.Fatalf("mapped address: waited %v, %v", d, err)
	}
	// Exempt networks have no network counter...
	w := netip.MustParseAddr("10.1.2.3")
	for i := range 10 {
		th.Authenticate(ctx, fmt.Sprint("x", i), "x", w)
	}
	if d, err := waits("alice", "pw", w); err != nil || d != 0 {
		t.Fatalf("exempt: waited %v, %v", d, err)
	}
	// ...but a user guessed through them is slowed there (and only there).
	for range 5 {
		th.Authenticate(ctx, "bob", "x", netip.MustParseAddr("10.9.9.9"))
	}
	if d, err := waits("bob", "pw", netip.MustParseAddr("10.9.9.9")); err != nil || d == 0 {
		t.Fatalf("pair through an exempt network: waited %v, %v", d, err)
	}
}

// TestThrottleSuccessClearsPair: typos before the right password are forgiven; the
// network's count is not.
func TestThrottleSuccessClearsPair(t *testing.T) {
	ctx := context.Background()
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{MaxFailuresPerIP: 9})
	for range 2 {
		for range 4 {
			th.Authenticate(ctx, "alice", "typo", ip1)
		}
		if _, err := th.Authenticate(ctx, "alice", "pw", ip1); err != nil {
			t.Fatal(err)
		}
	}
	// Eight failures, never 5 in a row: each answer delayed, no penalty.
	if d := clk.Slept(0); len(d) != 8 || fmt.Sprint(d[0], d[7]) != "2s 2s" {
		t.Fatalf("slept %v, want 8 × 2s", d)
	}
	// But the network counted them all: a 9th failure puts it over its limit, and the
	// next attempt from it waits 4s after that failure (2s after its answer).
	th.Authenticate(ctx, "alice", "typo", ip1)
	before, n := clk.Now(), len(f.at)
	if _, err := th.Authenticate(ctx, "alice", "pw", ip1); err != nil {
		t.Fatal(err)
	}
	if d := f.at[n].Sub(before); d != 2*time.Second {
		t.Fatalf("after 9 failures from the network: checked after %v", d)
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
	if th.Len() != 0 {
		t.Fatalf("%d entries after successes and outages", th.Len())
	}
	// Nor do throttled attempts.
	th.Authenticate(ctx, "alice", "bad", ip2)
	th.Authenticate(ctx, "alice", "bad", ip2)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	for range 5 {
		if _, err := th.Authenticate(short, "alice", "pw", ip2); !errors.Is(err, ErrThrottled) {
			t.Fatalf("within 100ms of a 4s penalty: %v", err)
		}
	}
	if n, _ := th.failures(th.pairKey("alice", ip2), clk.Now()); n != 2 {
		t.Fatalf("%d failures counted, want 2", n)
	}
	// Failed and throttled answers are delayed; successes are not.
	if d := clk.Slept(0); len(d) != 7 || d[0] != 2*time.Second || d[2] > 50*time.Millisecond {
		t.Fatalf("slept %v, want 2 × 2s then 5 × at most 50ms", d)
	}
}

// pairKey returns the name of the (user, network) counter of an attempt.
func (t *Throttle) pairKey(user string, remote netip.Addr) string {
	ks, _ := t.keys(user, remote)
	return ks[len(ks)-1].name
}

// TestThrottleDeadline: a penalty that would outlast (half) the caller's remaining time
// is answered at once with ErrThrottled, without checking the password; one that fits
// is waited out.
func TestThrottleDeadline(t *testing.T) {
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{})
	for range 10 {
		th.Authenticate(context.Background(), "alice", "bad", ip3)
	}
	calls, sleeps := f.Calls(), clk.Sleeps()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	_, err := th.Authenticate(ctx, "alice", "pw", ip3)
	if !errors.Is(err, ErrThrottled) || f.Calls() != calls {
		t.Fatalf("15s penalty within a 20s deadline: %v, %d checks", err, f.Calls()-calls)
	}
	var tmp interface{ Temporary() bool }
	if !errors.As(err, &tmp) || !tmp.Temporary() {
		t.Fatalf("%v is not temporary", err)
	}
	if d := clk.Slept(sleeps); len(d) != 1 || d[0] != 2*time.Second || time.Since(began) > time.Second {
		t.Fatalf("throttled answer: slept %v, took %v; want only the failure delay", d, time.Since(began))
	}
	// With a minute to go, the 15s (less what passed) are waited out and alice is in.
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sleeps = clk.Sleeps()
	if _, err := th.Authenticate(ctx, "alice", "pw", ip3); err != nil {
		t.Fatal(err)
	}
	if d := clk.Slept(sleeps); len(d) != 1 || d[0] != 11*time.Second {
		t.Fatalf("slept %v, want [11s]", d)
	}
}

func TestThrottleDelayWithinDeadline(t *testing.T) {
	f := &fakeAuth{users: map[string]string{"alice": "pw"}}
	th, clk := newThrottle(t, f, ThrottleConfig{FailureDelay: 10 * time.Second, MaxFailureDelay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	th.Authenticate(ctx, "alice", "bad", ip1)
	if d := clk.Slept(0); len(d) != 1 || d[0] > 500*time.Millisecond {
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
	checkNoGates(t, th)
}

// blockingAuth fails every attempt, but only when released, and tracks the attempts
// in it at once.
type blockingAuth struct {
	release chan struct{}
	mu      sync.Mutex
	calls   int
	in      int
	maxIn   int
}

func (b *blockingAuth) Authenticate(ctx context.Context, _, _ string, _ netip.Addr) (string, error) {
	b.mu.Lock()
	b.calls++
	b.in++
	b.maxIn = max(b.maxIn, b.in)
	b.mu.Unlock()
	<-b.release
	b.mu.Lock()
	b.in--
	b.mu.Unlock()
	return "", ErrInvalid
}

func (b *blockingAuth) state() (calls, in int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls, b.in
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestThrottleParallelBurst: 20 parallel guesses for one user from one network are
// checked at most MaxFailuresPerUser at once while the pair is under its limit, then one
// at a time, so parallel connections do not multiply the guess rate.
func TestThrottleParallelBurst(t *testing.T) {
	// 20 guesses from 20 networks: max_parallel_per_user (2) bounds them.
	b := &blockingAuth{release: make(chan struct{})}
	th, _ := newThrottle(t, b, ThrottleConfig{})
	results := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := th.Authenticate(context.Background(), "alice", "guess", netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
			results <- err
		}()
	}
	for i := range 20 {
		waitFor(t, fmt.Sprint("checks after ", i, " answers"), func() bool { _, in := b.state(); return in == min(2, 20-i) })
		b.release <- struct{}{}
	}
	for range 20 {
		if err := <-results; !errors.Is(err, ErrInvalid) {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	maxIn := b.maxIn
	b.mu.Unlock()
	if maxIn != 2 {
		t.Fatalf("%d checks for one user at once", maxIn)
	}

	// Now one network: 20 connections from 198.51.100.7.
	b2 := &blockingAuth{release: make(chan struct{})}
	th, clk := newThrottle(t, b2, ThrottleConfig{MaxParallelPerUser: 20})
	start := clk.Now()
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := th.Authenticate(context.Background(), "alice", "guess", ip3)
			errs <- err
		}()
	}
	waitFor(t, "5 checks at once", func() bool { _, in := b2.state(); return in == 5 })
	time.Sleep(20 * time.Millisecond)
	if calls, in := b2.state(); calls != 5 || in != 5 {
		t.Fatalf("%d checks begun, %d at once, want 5 while under the limit", calls, in)
	}
	for range 5 {
		b2.release <- struct{}{}
	}
	for i := 6; i <= 20; i++ {
		waitFor(t, fmt.Sprint("check ", i), func() bool { calls, _ := b2.state(); return calls == i })
		time.Sleep(5 * time.Millisecond)
		if calls, in := b2.state(); calls != i || in != 1 {
			t.Fatalf("beyond the limit: %d checks begun, %d at once", calls, in)
		}
		th.mu.Lock()
		queued := th.gates[th.pairKey("alice", ip3)].queue.Len()
		th.mu.Unlock()
		if queued != 20-i {
			t.Fatalf("check %d: %d queued, want %d", i, queued, 20-i)
		}
		b2.release <- struct{}{}
	}
	for range 20 {
		if err := <-errs; !errors.Is(err, ErrInvalid) {
			t.Fatal(err)
		}
	}
	b2.mu.Lock()
	maxIn = b2.maxIn
	b2.mu.Unlock()
	if maxIn != 5 {
		t.Fatalf("%d checks at once", maxIn)
	}
	// Serialized and penalized: the 15 guesses beyond the limit took at least
	// 4+8+13×15 s of (fake) time, whatever the parallelism.
	if took := clk.Now().Sub(start); took < (4+8+13*15)*time.Second {
		t.Fatalf("20 parallel guesses took %v", took)
	}
	checkNoGates(t, th)
}

// TestThrottleParallelDeadline: parallel attempts queued behind a penalized pair whose
// turn would come after their deadline are answered ErrThrottled at once instead of
// holding their connections until the deadline.
func TestThrottleParallelDeadline(t *testing.T) {
	b := &blockingAuth{release: make(chan struct{})}
	th, clk := newThrottle(t, b, ThrottleConfig{MaxFailuresPerUser: 1, FailureDelay: time.Second, MaxFailureDelay: 10 * time.Second})
	go func() {
		b.release <- struct{}{}
	}()
	if _, err := th.Authenticate(context.Background(), "alice", "x", ip3); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	// The pair is penalized (2s). One attempt holds the turn in the backend; with 12.5s
	// of budget (half a 25s deadline) queued attempts fit until the estimate passes it.
	first := make(chan error, 1)
	go func() {
		_, err := th.Authenticate(context.Background(), "alice", "x", ip3)
		first <- err
	}()
	waitFor(t, "the first check", func() bool { calls, _ := b.state(); return calls == 2 })
	clk.mu.Lock()
	clk.frozen = true // the refused answers' delays must not move the estimates
	clk.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := th.Authenticate(ctx, "alice", "x", ip3)
			errs <- err
		}()
	}
	// The first one's turn came when its penalty ended, so queued attempts are estimated
	// at 0, 2s, 4s, ... 12s (a penalty each): 7 wait, 3 are refused at once.
	for range 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrThrottled) {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("queued attempts past the deadline not refused at once")
		}
	}
	waitFor(t, "7 queued", func() bool {
		th.mu.Lock()
		defer th.mu.Unlock()
		g := th.gates[th.pairKey("alice", ip3)]
		return g != nil && g.queue.Len() == 7
	})
	cancel()
	for range 7 {
		if err := <-errs; !errors.Is(err, ErrThrottled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled while queued: %v", err)
		}
	}
	b.release <- struct{}{}
	if err := <-first; !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	th.mu.Lock()
	gates := len(th.gates)
	th.mu.Unlock()
	if gates != 0 {
		t.Fatalf("%d gates left", gates)
	}
}

// checkNoGates fails the test unless every gate of th, per network and per user, is gone.
func checkNoGates(t *testing.T, th *Throttle) {
	t.Helper()
	th.mu.Lock()
	gates, users := len(th.gates), len(th.userGates)
	th.mu.Unlock()
	if gates != 0 || users != 0 {
		t.Fatalf("%d gates and %d user gates left", gates, users)
	}
}
