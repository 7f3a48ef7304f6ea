package auth

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/internal/netlist"
)

// ThrottleConfig configures brute-force throttling (Throttle) on Dovecot's model: slow
// guessing down, never lock the owner out.
//
// Failures (ErrInvalid; successes, outages and throttled attempts never count) are counted
// in a sliding Window per client network (an IPv4 address, an IPv6 /IPv6Prefix) and per
// (user, client network) pair, never per user alone: failures from one network cannot
// slow a user's logins from another. Every failed answer is delayed FailureDelay. Once a
// pair has MaxFailuresPerUser failures (or a network MaxFailuresPerIP), its attempts are
// checked one at a time, each no sooner than a penalty after the last failure: twice
// FailureDelay, doubling with each further failure, at most MaxFailureDelay. A penalty
// that would outlast half the caller's remaining time is answered at once with
// ErrThrottled, without checking the password.
type ThrottleConfig struct {
	// Window is how long a failure counts (default 10m).
	Window time.Duration `yaml:"window"`
	// MaxFailuresPerUser: failures of one user name from one client network in Window
	// before that pair is slowed down (default 5; negative: no per-pair counter).
	MaxFailuresPerUser int `yaml:"max_failures_per_user"`
	// MaxFailuresPerIP: failures from one client network in Window, whatever the user,
	// before the network is slowed down (default 20; negative: no per-network counter).
	MaxFailuresPerIP int `yaml:"max_failures_per_ip"`
	// FailureDelay delays every failed or throttled answer, as Dovecot's
	// auth_failure_delay does (default 2s; negative: no delays and no penalties, for
	// tests). The first penalty is twice FailureDelay. No delay outlasts half the
	// caller's remaining time.
	FailureDelay time.Duration `yaml:"failure_delay"`
	// MaxFailureDelay caps the doubling penalty (default 15s, Dovecot's
	// AUTH_PENALTY_MAX_SECS).
	MaxFailureDelay time.Duration `yaml:"max_failure_delay"`
	// IPv6Prefix groups IPv6 clients by network (default 64: one customer site).
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// MaxParallelPerUser bounds the attempts for one user name checked at once, from
	// every network together (default 2); more wait their turn within their context.
	// Penalty waits happen before this gate, so a slowed attacker does not hold it.
	MaxParallelPerUser int `yaml:"max_parallel_per_user"`
	// MaxEntries bounds the tracked networks and pairs (default 100000: 17 MB measured
	// with one failure each, 32 MB with as many as count); the least recently failed are
	// forgotten first.
	MaxEntries int `yaml:"max_entries"`
	// Exempt lists networks without a network counter (CIDR), such as a webmail
	// front-end that logs in for many users from one address. Their (user, network)
	// pairs are still counted and slowed.
	Exempt []string `yaml:"exempt"`

	// Now and Sleep replace the clock in tests (defaults time.Now and a timer).
	Now   func() time.Time                           `yaml:"-"`
	Sleep func(ctx context.Context, d time.Duration) `yaml:"-"`
}

// Throttle wraps an Authenticator with brute-force throttling. It is safe for
// concurrent use; its memory is bounded by MaxEntries and by the attempts in flight, and
// it runs no goroutine of its own.
type Throttle struct {
	next   Authenticator
	cfg    ThrottleConfig
	exempt []netip.Prefix

	base      time.Time // failure times are kept as offsets from it
	doublings int       // failures past a limit until the penalty reaches its cap

	mu        sync.Mutex
	entries   map[string]*list.Element // failure histories of networks and pairs
	lru       *list.List               // front: most recently failed *tentry
	gates     map[string]*gate         // network and pair keys with attempts in flight
	userGates map[string]*userGate
}

// tkey is a counter: a client network ("n\x00NET") or a (user, network) pair
// ("p\x00USER\x00NET"), with its failure limit.
type tkey struct {
	name  string
	limit int
}

// tentry is the failure history of a key: the times of its last failures (as offsets
// from Throttle.base), oldest first. Only as many are kept as can change an answer
// (keep), so that an entry stays small whatever the attacker does.
type tentry struct {
	key   string
	fails []int64
}

// gate admits the attempts of one key: as many at once as failures are left before the
// limit, one at a time beyond it, first come first served. It exists only while
// attempts are in flight or waiting, so the map is bounded by concurrent logins.
type gate struct {
	inflight int
	queue    list.List // *waiter
}

type waiter struct {
	ready   chan struct{} // closed when admitted
	granted bool
}

// userGate admits MaxParallelPerUser checks for one user name at a time.
type userGate struct {
	slots chan struct{}
	users int // attempts holding or waiting for a slot
}

// NewThrottle returns next wrapped with throttling.
func NewThrottle(next Authenticator, cfg ThrottleConfig) (*Throttle, error) {
	if next == nil {
		return nil, errors.New("auth: throttle needs an authenticator")
	}
	if cfg.Window == 0 {
		cfg.Window = 10 * time.Minute
	}
	if cfg.FailureDelay == 0 {
		cfg.FailureDelay = 2 * time.Second
	}
	if cfg.MaxFailureDelay == 0 {
		cfg.MaxFailureDelay = 15 * time.Second
	}
	if cfg.MaxFailuresPerIP == 0 {
		cfg.MaxFailuresPerIP = 20
	}
	if cfg.MaxFailuresPerUser == 0 {
		cfg.MaxFailuresPerUser = 5
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 64
	}
	if cfg.IPv6Prefix < 0 || cfg.IPv6Prefix > 128 {
		return nil, fmt.Errorf("auth: throttle ipv6_prefix %d outside 0..128", cfg.IPv6Prefix)
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100000
	}
	if cfg.MaxParallelPerUser <= 0 {
		cfg.MaxParallelPerUser = 2
	}
	if cfg.Window < 0 {
		return nil, errors.New("auth: throttle window must be positive")
	}
	if cfg.FailureDelay > 0 && cfg.MaxFailureDelay < cfg.FailureDelay {
		return nil, errors.New("auth: throttle max_failure_delay must be at least failure_delay")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	t := &Throttle{next: next, cfg: cfg, base: cfg.Now(), entries: make(map[string]*list.Element), lru: list.New(),
		gates: make(map[string]*gate), userGates: make(map[string]*userGate)}
	if cfg.FailureDelay > 0 {
		for d := 2 * cfg.FailureDelay; d < cfg.MaxFailureDelay; d *= 2 {
			t.doublings++
		}
	}
	exempt, err := netlist.Prefixes(cfg.Exempt)
	if err != nil {
		return nil, fmt.Errorf("auth: throttle exempt: %w", err)
	}
	t.exempt = exempt
	return t, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// keys returns the counters of an attempt, network first (absent when the network is
// exempt or unknown, or the limit is off), then the (user, network) pair, and the user
// name for the parallelism gate. A client of unknown address shares the pair of the
// network "unknown".
func (t *Throttle) keys(username string, remote netip.Addr) (counters []tkey, user string) {
	u := strings.ToLower(strings.TrimSpace(username))
	if n, err := address.Normalize(u); err == nil {
		u = n // one key for every spelling of an address (case, IDN form)
	}
	if len(u) > address.MaxLen {
		u = u[:address.MaxLen]
	}
	net := "unknown"
	exempt := true
	if remote.IsValid() {
		remote = remote.Unmap()
		var p netip.Prefix
		if remote.Is6() {
			p, _ = remote.Prefix(t.cfg.IPv6Prefix)
		} else {
			p = netip.PrefixFrom(remote, 32)
		}
		net = p.String()
		exempt = false
		for _, e := range t.exempt {
			if e.Contains(remote) {
				exempt = true
			}
		}
	}
	if !exempt && t.cfg.MaxFailuresPerIP > 0 {
		counters = append(counters, tkey{"n\x00" + net, t.cfg.MaxFailuresPerIP})
	}
	if t.cfg.MaxFailuresPerUser > 0 {
		counters = append(counters, tkey{"p\x00" + u + "\x00" + net, t.cfg.MaxFailuresPerUser})
	}
	return counters, u
}

// Authenticate implements Authenticator: it waits for its turn on the network and pair
// gates, then for their penalties, then for a slot of the user, and checks the password.
func (t *Throttle) Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error) {
	counters, user := t.keys(username, remote)
	// Waits (turns and penalties) may use half of the caller's remaining time; the
	// check and the answer keep the other half.
	wctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	held := counters[:0:0]
	leave := func() {
		for _, k := range held {
			t.leave(k)
		}
		held = nil
	}
	defer leave()
	// A refused or failed answer is delayed after the gates are open again: the delay
	// is this client's, the penalty the key's.
	throttled := func(cause error) error {
		leave()
		t.delay(ctx)
		return fmt.Errorf("%w: %.80q from %v: %w", ErrThrottled, username, remote, cause)
	}
	for _, k := range counters {
		if err := t.enter(wctx, k); err != nil {
			return "", throttled(err)
		}
		held = append(held, k)
	}
	if wait := t.penalty(counters); wait > 0 {
		if wait > remaining(wctx) {
			return "", throttled(fmt.Errorf("penalty of %v outlasts the deadline", wait.Round(time.Millisecond)))
		}
		t.cfg.Sleep(wctx, wait)
		if err := wctx.Err(); err != nil {
			return "", throttled(fmt.Errorf("waiting out the penalty: %w", err))
		}
	}
	release, err := t.enterUser(wctx, user)
	if err != nil {
		return "", throttled(fmt.Errorf("waiting behind other attempts for the same user: %w", err))
	}
	name, err := t.next.Authenticate(ctx, username, password, remote)
	release()
	switch {
	case err == nil:
		t.succeeded(counters)
	case errors.Is(err, ErrInvalid):
		t.failed(counters)
		leave()
		t.delay(ctx)
	}
	return name, err
}

func remaining(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return math.MaxInt64
}

// enter waits for k's gate to admit the attempt. An attempt that would have to wait
// behind a penalized key for longer than ctx allows is refused at once.
func (t *Throttle) enter(ctx context.Context, k tkey) error {
	t.mu.Lock()
	now := t.cfg.Now()
	g := t.gates[k.name]
	if g == nil {
		g = &gate{}
		t.gates[k.name] = g
	}
	n, last := t.failures(k.name, now)
	if g.queue.Len() == 0 && g.inflight < t.admits(n, k.limit) {
		g.inflight++
		t.mu.Unlock()
		return nil
	}
	if p := t.penaltyAfter(n, k.limit); p > 0 {
		// At best, the attempts queued ahead all fail too, each a penalty after the
		// last: the estimate the client's deadline is compared with.
		est := last.Add(p).Sub(now) + time.Duration(g.queue.Len())*p
		if est > remaining(ctx) {
			t.dropGate(k.name, g)
			t.mu.Unlock()
			return fmt.Errorf("turn expected in %v, past the deadline", est.Round(time.Millisecond))
		}
	}
	w := &waiter{ready: make(chan struct{})}
	el := g.queue.PushBack(w)
	t.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		if w.granted {
			t.mu.Unlock()
			t.leave(k)
		} else {
			g.queue.Remove(el)
			t.dropGate(k.name, g)
			t.mu.Unlock()
		}
		return fmt.Errorf("waiting for the turn: %w", ctx.Err())
	}
}

// leave ends an admitted attempt on k and admits the next ones in line.
func (t *Throttle) leave(k tkey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.gates[k.name]
	if g == nil {
		return
	}
	g.inflight--
	n, _ := t.failures(k.name, t.cfg.Now())
	for g.queue.Len() > 0 && g.inflight < t.admits(n, k.limit) {
		w := g.queue.Remove(g.queue.Front()).(*waiter)
		w.granted = true
		g.inflight++
		close(w.ready)
	}
	t.dropGate(k.name, g)
}

func (t *Throttle) dropGate(key string, g *gate) {
	if g.inflight == 0 && g.queue.Len() == 0 {
		delete(t.gates, key)
	}
}

// admits is how many attempts of a key with n failures may be checked at once: as many
// as failures are left before the limit (so that a parallel burst cannot overshoot
// it), one at a time from the limit on.
func (t *Throttle) admits(n, limit int) int {
	return max(limit-n, 1)
}

// penaltyAfter is the wait imposed after the last of n failures of a key: none before
// the limit, then 2 × FailureDelay doubling per failure, capped at MaxFailureDelay.
func (t *Throttle) penaltyAfter(n, limit int) time.Duration {
	if n < limit || t.cfg.FailureDelay <= 0 {
		return 0
	}
	d := t.cfg.FailureDelay
	for i := 0; i <= n-limit && d < t.cfg.MaxFailureDelay; i++ {
		d *= 2
	}
	return min(d, t.cfg.MaxFailureDelay)
}

// penalty returns how long the attempt must still wait: the longest of its keys'
// penalties, counted from each key's last failure.
func (t *Throttle) penalty(counters []tkey) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	var wait time.Duration
	for _, k := range counters {
		n, last := t.failures(k.name, now)
		if p := t.penaltyAfter(n, k.limit); p > 0 {
			wait = max(wait, last.Add(p).Sub(now))
		}
	}
	return wait
}

// failures returns the number of failures of key within the window (as far as it
// matters: at most keep) and the last one.
func (t *Throttle) failures(key string, now time.Time) (int, time.Time) {
	el, ok := t.entries[key]
	if !ok {
		return 0, time.Time{}
	}
	e := el.Value.(*tentry)
	cut := int64(now.Sub(t.base) - t.cfg.Window)
	i := 0
	for i < len(e.fails) && e.fails[i] <= cut {
		i++
	}
	if i == len(e.fails) {
		return 0, time.Time{}
	}
	return len(e.fails) - i, t.base.Add(time.Duration(e.fails[len(e.fails)-1]))
}

// keep is how many failure times of a key with this limit can change an answer: up to
// the limit and then until the penalty reaches its cap.
func (t *Throttle) keep(limit int) int {
	return limit + t.doublings + 1
}

// enterUser waits for one of the user's MaxParallelPerUser slots.
func (t *Throttle) enterUser(ctx context.Context, user string) (release func(), err error) {
	t.mu.Lock()
	g := t.userGates[user]
	if g == nil {
		g = &userGate{slots: make(chan struct{}, t.cfg.MaxParallelPerUser)}
		t.userGates[user] = g
	}
	g.users++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		if g.users--; g.users == 0 {
			delete(t.userGates, user)
		}
		t.mu.Unlock()
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}

// delay waits FailureDelay, but not past half the context's remaining time, so a
// throttled client gets its reply rather than a timeout.
func (t *Throttle) delay(ctx context.Context) {
	d := t.cfg.FailureDelay
	if d <= 0 {
		return
	}
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/2)
	}
	if d > 0 {
		t.cfg.Sleep(ctx, d)
	}
}

// failed records a failure on every counter of the attempt.
func (t *Throttle) failed(counters []tkey) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	at := int64(now.Sub(t.base))
	cut := at - int64(t.cfg.Window)
	for _, k := range counters {
		e := t.touch(k.name)
		i := 0
		for i < len(e.fails) && e.fails[i] <= cut {
			i++
		}
		n := copy(e.fails, e.fails[i:])
		if keep := t.keep(k.limit); n >= keep {
			n = copy(e.fails, e.fails[n-keep+1:n])
		}
		e.fails = append(e.fails[:n], at)
	}
}

// succeeded clears the pair's failures (typos before the right password), but not the
// network's: one valid account must not reset an attacker's network.
func (t *Throttle) succeeded(counters []tkey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(t.cfg.Now())
	for _, k := range counters {
		if !strings.HasPrefix(k.name, "p\x00") {
			continue
		}
		if el, ok := t.entries[k.name]; ok {
			t.remove(el)
		}
	}
}

// touch returns the entry for key, created if needed, as the most recently used; at
// MaxEntries the least recently used entry is dropped.
func (t *Throttle) touch(key string) *tentry {
	if el, ok := t.entries[key]; ok {
		t.lru.MoveToFront(el)
		return el.Value.(*tentry)
	}
	for t.lru.Len() >= t.cfg.MaxEntries {
		t.remove(t.lru.Back())
	}
	e := &tentry{key: key}
	t.entries[key] = t.lru.PushFront(e)
	return e
}

func (t *Throttle) remove(el *list.Element) {
	delete(t.entries, el.Value.(*tentry).key)
	t.lru.Remove(el)
}

// expire drops a few entries whose failures all left the window from the least
// recently used end, so that memory follows the live set without a goroutine.
func (t *Throttle) expire(now time.Time) {
	for range 4 {
		el := t.lru.Back()
		if el == nil {
			return
		}
		e := el.Value.(*tentry)
		if len(e.fails) > 0 && now.Sub(t.base.Add(time.Duration(e.fails[len(e.fails)-1]))) <= t.cfg.Window {
			return
		}
		t.remove(el)
	}
}

// Len returns the number of tracked networks and pairs (for metrics and tests).
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}
