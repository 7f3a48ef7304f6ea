package auth

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/address"
)

// ThrottleConfig configures brute-force throttling (Throttle). Failures are counted per
// client address and per user name in a sliding window; once a counter reaches its
// limit, attempts from that address (or for that user) get ErrThrottled without the
// password being checked, for Lockout, doubling with each further failure up to
// MaxLockout. Successful logins are never counted.
type ThrottleConfig struct {
	// Window is how long a failure counts (default 10m).
	Window time.Duration `yaml:"window"`
	// MaxFailuresPerIP locks a client address (an IPv6 /IPv6Prefix) out after this many
	// failures in Window (default 20; negative: no per-address limit).
	MaxFailuresPerIP int `yaml:"max_failures_per_ip"`
	// MaxFailuresPerUser locks a user name out after this many failures in Window, from
	// any address (default 5; negative: no per-user limit). Addresses from which the
	// user logged in successfully within TrustedFor stay allowed, so that an attacker
	// cannot lock a user out of their usual clients.
	MaxFailuresPerUser int `yaml:"max_failures_per_user"`
	// Lockout is the first lockout (default 1m); MaxLockout caps the doubling (default 1h).
	Lockout    time.Duration `yaml:"lockout"`
	MaxLockout time.Duration `yaml:"max_lockout"`
	// TrustedFor is how long a successful login exempts its address from the user's
	// lockout (default 168h; negative: never).
	TrustedFor time.Duration `yaml:"trusted_for"`
	// FailureDelay delays every failed or throttled answer, as Dovecot's
	// auth_failure_delay does (default 2s; negative: none). It never outlasts the
	// caller's deadline.
	FailureDelay time.Duration `yaml:"failure_delay"`
	// IPv6Prefix groups IPv6 clients by network (default 64: one customer site).
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// MaxParallelPerUser bounds the attempts for one user name checked at once
	// (default 2); more wait their turn within their context. Without it, a burst of
	// parallel guesses would all be checked before the first failure is counted.
	MaxParallelPerUser int `yaml:"max_parallel_per_user"`
	// MaxEntries bounds the tracked addresses and users (default 100000, about 20 MB);
	// the least recently seen are forgotten first.
	MaxEntries int `yaml:"max_entries"`
	// Exempt lists networks never throttled (CIDR), such as a webmail front-end that
	// logs in for many users from one address. Its failures still count per user.
	Exempt []string `yaml:"exempt"`

	// Now and Sleep replace the clock in tests (defaults time.Now and a timer).
	Now   func() time.Time                           `yaml:"-"`
	Sleep func(ctx context.Context, d time.Duration) `yaml:"-"`
}

// Throttle wraps an Authenticator with brute-force throttling. It is safe for
// concurrent use; its memory is bounded by MaxEntries.
type Throttle struct {
	next   Authenticator
	cfg    ThrottleConfig
	exempt []netip.Prefix

	mu      sync.Mutex
	entries map[string]*list.Element
	lru     *list.List // front: most recently touched *tentry
	gates   map[string]*gate
}

// gate admits MaxParallelPerUser attempts for one user at a time; it exists only while
// attempts are in flight, so the map is bounded by concurrent logins.
type gate struct {
	slots chan struct{}
	users int // attempts holding or waiting for a slot
}

type tentry struct {
	key         string
	fails       []time.Time // within the window, oldest first (bounded)
	lockedUntil time.Time
	lastOK      time.Time // "g" entries: last successful login from the address
}

// maxFailHistory bounds the failure times kept per entry; beyond it the lockout has
// long reached MaxLockout.
const maxFailHistory = 64

// NewThrottle returns next wrapped with throttling.
func NewThrottle(next Authenticator, cfg ThrottleConfig) (*Throttle, error) {
	if next == nil {
		return nil, errors.New("auth: throttle needs an authenticator")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.Window, 10*time.Minute)
	def(&cfg.Lockout, time.Minute)
	def(&cfg.MaxLockout, time.Hour)
	def(&cfg.TrustedFor, 7*24*time.Hour)
	def(&cfg.FailureDelay, 2*time.Second)
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
	if cfg.Window < 0 || cfg.Lockout < 0 || cfg.MaxLockout < cfg.Lockout {
		return nil, errors.New("auth: throttle window and lockouts must be positive, max_lockout ≥ lockout")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	t := &Throttle{next: next, cfg: cfg, entries: make(map[string]*list.Element), lru: list.New(), gates: make(map[string]*gate)}
	for _, s := range cfg.Exempt {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("auth: throttle exempt %q: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		t.exempt = append(t.exempt, p.Masked())
	}
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

// keys returns the throttling keys of an attempt: the client network ("" if unknown or
// exempt), the user, and the user-from-network pair.
func (t *Throttle) keys(username string, remote netip.Addr) (ip, user, pair string) {
	u := strings.ToLower(strings.TrimSpace(username))
	if n, err := address.Normalize(u); err == nil {
		u = n // one key for every spelling of an address (case, IDN form)
	}
	if len(u) > address.MaxLen {
		u = u[:address.MaxLen]
	}
	user = "u\x00" + u
	if !remote.IsValid() {
		return "", user, ""
	}
	remote = remote.Unmap()
	var p netip.Prefix
	if remote.Is6() {
		p, _ = remote.Prefix(t.cfg.IPv6Prefix)
	} else {
		p = netip.PrefixFrom(remote, 32)
	}
	net := p.String()
	for _, e := range t.exempt {
		if e.Contains(remote) {
			// A shared front-end's success must not exempt it from user lockouts.
			return "", user, ""
		}
	}
	return "i\x00" + net, user, "g\x00" + u + "\x00" + net
}

// Authenticate implements Authenticator.
func (t *Throttle) Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error) {
	ipKey, userKey, pairKey := t.keys(username, remote)
	release, err := t.enter(ctx, userKey)
	if err != nil {
		return "", err
	}
	defer release()
	if until, ok := t.locked(ipKey, userKey, pairKey); !ok {
		t.delay(ctx)
		return "", fmt.Errorf("%w: %.80q from %v until %s", ErrThrottled, username, remote, until.UTC().Format(time.RFC3339))
	}
	name, err := t.next.Authenticate(ctx, username, password, remote)
	switch {
	case err == nil:
		t.succeeded(userKey, pairKey)
	case errors.Is(err, ErrInvalid):
		t.failed(ipKey, userKey)
		t.delay(ctx)
	}
	return name, err
}

// enter waits for one of the user's MaxParallelPerUser slots.
func (t *Throttle) enter(ctx context.Context, userKey string) (release func(), err error) {
	t.mu.Lock()
	g := t.gates[userKey]
	if g == nil {
		g = &gate{slots: make(chan struct{}, t.cfg.MaxParallelPerUser)}
		t.gates[userKey] = g
	}
	g.users++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		if g.users--; g.users == 0 {
			delete(t.gates, userKey)
		}
		t.mu.Unlock()
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, fmt.Errorf("%w: waiting behind other attempts for the same user: %w", ErrThrottled, ctx.Err())
	}
}

// delay waits FailureDelay, but not past the context's deadline (less a margin for the
// answer), so a throttled client gets its reply rather than a timeout.
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

// locked reports whether the attempt may proceed, or until when it is locked out.
func (t *Throttle) locked(ipKey, userKey, pairKey string) (time.Time, bool) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	if e := t.get(ipKey); e != nil && now.Before(e.lockedUntil) {
		return e.lockedUntil, false
	}
	if e := t.get(userKey); e != nil && now.Before(e.lockedUntil) {
		if g := t.get(pairKey); g != nil && t.cfg.TrustedFor > 0 && now.Sub(g.lastOK) < t.cfg.TrustedFor {
			return time.Time{}, true
		}
		return e.lockedUntil, false
	}
	return time.Time{}, true
}

func (t *Throttle) failed(ipKey, userKey string) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if ipKey != "" && t.cfg.MaxFailuresPerIP > 0 {
		t.fail(t.touch(ipKey), now, t.cfg.MaxFailuresPerIP)
	}
	if t.cfg.MaxFailuresPerUser > 0 {
		t.fail(t.touch(userKey), now, t.cfg.MaxFailuresPerUser)
	}
}

// fail records a failure and locks the entry when it reaches limit in the window: for
// Lockout after the limit-th failure, doubling with each one after it.
func (t *Throttle) fail(e *tentry, now time.Time, limit int) {
	cut := now.Add(-t.cfg.Window)
	i := 0
	for i < len(e.fails) && !e.fails[i].After(cut) {
		i++
	}
	e.fails = append(e.fails[i:], now)
	if len(e.fails) > maxFailHistory {
		e.fails = e.fails[len(e.fails)-maxFailHistory:]
	}
	if n := len(e.fails); n >= limit {
		d := t.cfg.Lockout
		for range n - limit {
			if d >= t.cfg.MaxLockout {
				break
			}
			d *= 2
		}
		e.lockedUntil = now.Add(min(d, t.cfg.MaxLockout))
	}
}

func (t *Throttle) succeeded(userKey, pairKey string) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	// A success clears the user's failures (typos before the right password), but not
	// the address's: one valid account must not reset an attacker's address.
	if el, ok := t.entries[userKey]; ok {
		t.remove(el)
	}
	if pairKey != "" && t.cfg.TrustedFor > 0 {
		t.touch(pairKey).lastOK = now
	}
}

func (t *Throttle) get(key string) *tentry {
	if key == "" {
		return nil
	}
	if el, ok := t.entries[key]; ok {
		return el.Value.(*tentry)
	}
	return nil
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

// expire drops a few stale entries from the least recently used end, so that memory
// follows the live set without a background goroutine.
func (t *Throttle) expire(now time.Time) {
	for range 4 {
		el := t.lru.Back()
		if el == nil {
			return
		}
		e := el.Value.(*tentry)
		stale := now.After(e.lockedUntil) &&
			(len(e.fails) == 0 || now.Sub(e.fails[len(e.fails)-1]) > t.cfg.Window) &&
			(e.lastOK.IsZero() || now.Sub(e.lastOK) > t.cfg.TrustedFor)
		if !stale {
			return
		}
		t.remove(el)
	}
}

// Len returns the number of tracked entries (for metrics and tests).
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}
