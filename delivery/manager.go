package delivery

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-mail/portcullis/spool"
)

// Config configures the queue manager. Zero values take the defaults in brackets.
type Config struct {
	// Hostname names this MTA in DSNs (Reporting-MTA, MAILER-DAEMON@Hostname). [localhost]
	Hostname string `yaml:"hostname"`
	// MaxLifetime is how long a message may stay queued before its remaining recipients
	// are failed and bounced (Postfix maximal_queue_lifetime). [120h]
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// DelayWarning sends one "delayed" DSN to the sender when a message is still queued
	// after this long. [4h]; set DisableDelayWarning to send none.
	DelayWarning        time.Duration `yaml:"delay_warning"`
	DisableDelayWarning bool          `yaml:"disable_delay_warning"`
	// MinBackoff and MaxBackoff bound the exponential backoff between attempts: the n-th
	// retry waits MinBackoff·2^(n-1), at most MaxBackoff, ±25% jitter. [5m, 1h]
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Concurrency is the number of messages delivered at once. [20]
	Concurrency int `yaml:"concurrency"`
	// PerDestination limits simultaneous deliveries to one destination (Route.Dest). [10]
	PerDestination int `yaml:"per_destination"`
	// DestinationLimits overrides PerDestination for named destinations. Local delivery
	// ("local") defaults to 8: deliveries to one mailbox at the same time share the store's
	// index commit, so 8 drained a 5000-message burst in 3.3–3.9 s against 4.8–5.0 s with 2,
	// at 0.74 instead of 0.95 ms of CPU per message (16: the same as 8). Delivering
	// alongside a burst (inflow_delay off), more local deliveries take CPU and disk from
	// accepting (1188–1302 msgs/s with 8, 1836–2030 with 2) but finish sooner overall.
	DestinationLimits map[string]int `yaml:"destination_limits"`
	// MaxReceived fails a message with more Received header fields as a mail loop
	// (Postfix hopcount_limit). [50]
	MaxReceived int `yaml:"max_received"`
	// AttemptTimeout bounds one transport call. [10m]
	AttemptTimeout time.Duration `yaml:"attempt_timeout"`
	// Rescan is how often the queue directory is read again as a safety net. Changes made
	// by the queue commands (another process) are picked up within a second anyway,
	// through the spool's kick file. [1m]
	Rescan time.Duration `yaml:"rescan"`
	// InflowDelay lets a burst of incoming mail be accepted before it is delivered: while
	// messages arrive faster than InflowRate per second, deliveries that became due less
	// than InflowDelay ago wait (as Exim's queue_only_load, by arrival rate rather than by
	// load average). Accepting and delivering share the CPU and the disk, and an SMTP client
	// waits for its 250 while a mailbox does not notice a delay of seconds: measured on two
	// cores, a burst of 5000 messages from 10 clients was accepted at 3562–3670 msgs/s with
	// deliveries waiting and 1829–1908 with them running alongside. The wait is bounded, so
	// under sustained inflow messages go out InflowDelay after arrival at the full rate. The
	// messages are on disk meanwhile; nothing depends on it but delivery latency.
	// [2s; negative: off]
	InflowDelay time.Duration `yaml:"inflow_delay"`
	// InflowRate is the arrival rate, in messages per second, above which InflowDelay
	// applies. [100]
	InflowRate int `yaml:"inflow_rate"`
	// Logger gets one record per recipient result. [slog.Default()]
	Logger *slog.Logger `yaml:"-"`
	// Metrics, when set, receives portcullis_delivery_* metrics.
	Metrics prometheus.Registerer `yaml:"-"`
	// Outcomes, when set, is told each recipient's result once it is recorded in the
	// queue (the decision log joins it to the SMTP transaction by queue id).
	Outcomes OutcomeRecorder `yaml:"-"`
}

// OutcomeRecorder receives delivery results. RecordOutcome runs on the delivery path: it
// must return at once, never waiting on a disk or a network.
type OutcomeRecorder interface {
	RecordOutcome(o Outcome)
}

// Outcome is one recipient's result of one delivery attempt.
type Outcome struct {
	QueueID string
	Rcpt    string // as queued (before aliases and rewriting)
	From    string // the envelope sender, "" for the null sender
	Status  string // "delivered", "deferred" or "bounced"
	Reply   string // what the destination (or the queue) said
	Dest    string // the destination: "local", "smtp:example.org", "lmtp:127.0.0.1:24"; "" when unrouted
	Arrived time.Time
	Time    time.Time
	// Removed: the message left the queue with this attempt (set on its last outcome).
	Removed bool
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	def(&c.MaxLifetime, 120*time.Hour)
	def(&c.DelayWarning, 4*time.Hour)
	def(&c.MinBackoff, 5*time.Minute)
	def(&c.MaxBackoff, time.Hour)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	def(&c.AttemptTimeout, 10*time.Minute)
	def(&c.Rescan, time.Minute)
	if c.Concurrency <= 0 {
		c.Concurrency = 20
	}
	if c.PerDestination <= 0 {
		c.PerDestination = 10
	}
	if _, ok := c.DestinationLimits["local"]; !ok {
		limits := map[string]int{"local": 8}
		for k, v := range c.DestinationLimits {
			limits[k] = v
		}
		c.DestinationLimits = limits
	}
	if c.MaxReceived <= 0 {
		c.MaxReceived = 50
	}
	if c.InflowDelay == 0 {
		c.InflowDelay = 2 * time.Second
	}
	if c.InflowRate <= 0 {
		c.InflowRate = 100
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Manager is the queue manager: it delivers what the spool holds. Messages move between
// the states of Postfix's queue manager: active (being delivered), deferred (waiting for
// their next attempt) and hold (skipped until released).
type Manager struct {
	cfg    Config
	sp     *spool.Spool
	router Router
	log    *slog.Logger
	now    func() time.Time // for tests
	m      *metrics

	mu       sync.Mutex
	msgs     map[string]*entry
	sched    schedule
	destBusy map[string]int
	destWait map[string][]*entry // messages that found the destination full, first come first served
	kick     chan struct{}
	watch    sync.Once
	idle     []chan struct{} // closed when nothing is due or active (WaitIdle)
	inflow   [inflowSlots]arrivals
}

// The arrival rate is counted in slots of inflowSlot; the last inflowSlots slots (the
// current one included) make the estimate.
const (
	inflowSlot  = 100 * time.Millisecond
	inflowSlots = 3
)

type arrivals struct {
	slot int64 // time / inflowSlot
	n    int
}

// arrived counts an arrival at now. q.mu is held.
func (q *Manager) arrived(now time.Time) {
	slot := now.UnixNano() / int64(inflowSlot)
	a := &q.inflow[slot%inflowSlots]
	if a.slot != slot {
		*a = arrivals{slot: slot}
	}
	a.n++
}

// busyInflow reports whether messages arrived faster than InflowRate over the last
// inflowSlots slots. q.mu is held.
func (q *Manager) busyInflow(now time.Time) bool {
	if q.cfg.InflowDelay < 0 {
		return false
	}
	slot := now.UnixNano() / int64(inflowSlot)
	n := 0
	for _, a := range q.inflow {
		if slot-a.slot < inflowSlots {
			n += a.n
		}
	}
	return n*int(time.Second/inflowSlot) >= q.cfg.InflowRate*inflowSlots
}

type entry struct {
	id     string
	next   time.Time
	held   bool
	active bool
	index  int // in sched, -1 when not scheduled
}

// New returns a queue manager for sp that routes recipients with router. It does no I/O;
// Run starts it.
func New(cfg Config, sp *spool.Spool, router Router) (*Manager, error) {
	if sp == nil || router == nil {
		return nil, errors.New("delivery: New needs a spool and a router")
	}
	cfg.defaults()
	q := &Manager{
		cfg: cfg, sp: sp, router: router, log: cfg.Logger, now: time.Now,
		msgs: map[string]*entry{}, destBusy: map[string]int{}, destWait: map[string][]*entry{}, kick: make(chan struct{}, 1),
	}
	var err error
	if q.m, err = newMetrics(cfg.Metrics, q); err != nil {
		return nil, fmt.Errorf("delivery: metrics: %w", err)
	}
	return q, nil
}

func (q *Manager) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// add schedules id, just queued, to be tried now unless it is known already.
func (q *Manager) add(id string) {
	q.mu.Lock()
	now := q.now()
	q.arrived(now)
	if _, ok := q.msgs[id]; !ok {
		// Due now: the schedule is then in arrival order, and the inflow wait can tell
		// how long a message has been due.
		e := &entry{id: id, index: -1, next: now}
		q.msgs[id] = e
		heap.Push(&q.sched, e)
	}
	q.mu.Unlock()
	q.wake()
}

// rescan reads the queue directory: new messages are added, vanished ones dropped, and
// waiting ones take their hold state and next attempt from the status file, which the
// queue commands may have changed.
func (q *Manager) rescan() error {
	ids, err := q.sp.List()
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(ids))
	for _, id := range ids {
		present[id] = true
		st, err := q.sp.Status(id)
		if err != nil {
			q.log.Error("delivery: reading status", "id", id, "err", err)
			continue
		}
		q.mu.Lock()
		e, ok := q.msgs[id]
		if !ok {
			e = &entry{id: id, index: -1}
			q.msgs[id] = e
		}
		if !e.active {
			e.held, e.next = st.Held && !st.Deleted, st.NextAttempt
			if st.Deleted {
				e.next = time.Time{}
			}
			q.schedule(e)
		}
		q.mu.Unlock()
	}
	q.mu.Lock()
	for id, e := range q.msgs {
		if !present[id] && !e.active {
			if e.index >= 0 {
				heap.Remove(&q.sched, e.index)
			}
			delete(q.msgs, id)
		}
	}
	q.mu.Unlock()
	q.wake()
	return nil
}

// schedule puts e in the schedule, or takes it out when held. q.mu is held.
func (q *Manager) schedule(e *entry) {
	switch {
	case e.held && e.index >= 0:
		heap.Remove(&q.sched, e.index)
	case e.held:
	case e.index >= 0:
		heap.Fix(&q.sched, e.index)
	default:
		heap.Push(&q.sched, e)
	}
}

// Run delivers until ctx ends, then waits for the attempts in progress (whose transports
// see ctx cancelled) and returns. Messages delivered meanwhile are removed; the rest stay
// queued for the next start.
func (q *Manager) Run(ctx context.Context) error {
	q.watch.Do(func() { q.sp.Watch(q.add) })
	if err := q.rescan(); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	rescan := time.NewTicker(q.cfg.Rescan)
	defer rescan.Stop()
	// The queue commands touch the spool's kick file: look once a second, rescan on change.
	kicked := q.sp.Kicked()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sem := make(chan struct{}, q.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		now := q.now()
		wait := time.Hour
		paused := false
		q.mu.Lock()
		for q.sched.Len() > 0 && len(sem) < cap(sem) {
			e := q.sched[0]
			if d := e.next.Sub(now); d > 0 {
				wait = d
				break
			}
			// The head has been due longest: when it may wait for the inflow to calm
			// down, every other entry may too.
			if since := now.Sub(e.next); since < q.cfg.InflowDelay && q.busyInflow(now) {
				wait = min(inflowSlot, q.cfg.InflowDelay-since)
				paused = true
				break
			}
			heap.Pop(&q.sched)
			e.active = true
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem; q.wake() }()
				q.attempt(ctx, e)
			})
		}
		if len(sem) == 0 && !paused { // nothing active, and nothing due or the loop would have started it
			for _, ch := range q.idle {
				close(ch)
			}
			q.idle = nil
		}
		q.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-q.kick:
		case <-timer.C:
		case <-rescan.C:
			if err := q.rescan(); err != nil {
				q.log.Error("delivery: rescan", "err", err)
			}
		case <-poll.C:
			if k := q.sp.Kicked(); !k.Equal(kicked) {
				kicked = k
				if err := q.rescan(); err != nil {
					q.log.Error("delivery: rescan", "err", err)
				}
			}
		}
	}
}

// WaitIdle returns when no message is being delivered and none is due (the ones waiting
// for a later attempt or on hold do not count), or when ctx ends. For tests and for
// "flush and wait".
func (q *Manager) WaitIdle(ctx context.Context) error {
	ch := make(chan struct{})
	q.mu.Lock()
	q.idle = append(q.idle, ch)
	q.mu.Unlock()
	q.wake()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt runs one delivery attempt of e and puts it back in the schedule or forgets it.
func (q *Manager) attempt(ctx context.Context, e *entry) {
	next, held, gone, busy := q.deliver(ctx, e.id)
	q.mu.Lock()
	defer q.mu.Unlock()
	e.active = false
	if gone {
		delete(q.msgs, e.id)
		return
	}
	e.next, e.held = next, held
	for _, dest := range busy {
		if q.destBusy[dest] < q.cfg.limit(dest) {
			e.next = time.Time{} // freed meanwhile
		} else {
			q.destWait[dest] = append(q.destWait[dest], e) // release wakes it
		}
	}
	q.schedule(e)
}

// group is the recipients of one message that go to one destination.
type group struct {
	route Route
	rcpts []string // as queued
	to    []string // as delivered (after Route.Rcpt rewriting)
}

// deliver tries every remaining recipient of message id once and records the outcome.
func (q *Manager) deliver(ctx context.Context, id string) (next time.Time, held, gone bool, busy []string) {
	now := q.now()
	retry := now.Add(q.cfg.MinBackoff)
	env, msg, err := q.sp.Open(id)
	if errors.Is(err, spool.ErrNotFound) {
		return time.Time{}, false, true, busy
	}
	if err != nil {
		q.log.Error("delivery: cannot open queued message", "id", id, "err", err)
		return retry, false, false, busy
	}
	defer msg.Close()
	st, err := q.sp.Status(id)
	if err != nil {
		q.log.Error("delivery: cannot read status", "id", id, "err", err)
		return retry, false, false, busy
	}
	if st.Deleted { // "queue delete" from another process while we ran
		if err := q.sp.Delete(id); err != nil && !errors.Is(err, spool.ErrNotFound) {
			q.log.Error("delivery: cannot delete message", "id", id, "err", err)
			return retry, false, false, busy
		}
		q.log.Info("delivery: message deleted by the administrator", "id", id)
		return time.Time{}, false, true, busy
	}
	if st.Held {
		if err := q.sp.Park(id); err != nil { // held from another process: leave the log
			q.log.Error("delivery: cannot move held message out of the incoming log", "id", id, "err", err)
		}
		return time.Time{}, true, false, busy
	}
	if env.Quarantine && !st.Released {
		if err := q.sp.Hold(id); err != nil {
			q.log.Error("delivery: cannot hold quarantined message", "id", id, "err", err)
			return retry, false, false, busy
		}
		q.log.Info("delivery: quarantined message held", "id", id, "from", env.From)
		return time.Time{}, true, false, busy
	}
	if st.NextAttempt.After(now) { // deferred meanwhile (another process, or a rescan race)
		return st.NextAttempt, false, false, busy
	}
	arrived := env.ReceivedAt
	if arrived.IsZero() {
		arrived, _ = spool.IDTime(id)
	}
	remaining := slices.Compact(slices.Sorted(slices.Values(st.Remaining(env)))) // an address listed twice gets one copy

	results := map[string]Result{} // by recipient as queued
	dests := map[string]string{}   // their destinations
	var failAll string
	if len(remaining) > 0 {
		if n, err := countReceived(io.NewSectionReader(msg, 0, msg.Size())); err != nil {
			q.log.Error("delivery: cannot read message header", "id", id, "err", err)
			return retry, false, false, busy
		} else if n > q.cfg.MaxReceived {
			failAll = fmt.Sprintf("554 5.4.6 mail loop: %d Received header fields (limit %d)", n, q.cfg.MaxReceived)
		} else if now.Sub(arrived) > q.cfg.MaxLifetime {
			last := st.LastReply
			if last == "" {
				last = "none"
			}
			failAll = fmt.Sprintf("451 4.4.7 message expired after %s in the queue; last error: %s", q.cfg.MaxLifetime, oneLine(last))
		}
	}
	if failAll != "" {
		for _, r := range remaining {
			results[r] = Result{Rcpt: r, Err: Permanent(failAll, nil), Reply: failAll}
		}
	} else {
		busy = q.deliverGroups(ctx, env, msg, remaining, results, dests)
	}
	shutdown := ctx.Err() != nil

	// Turn results into records. Failed recipients are bounced before their failure is
	// recorded: a crash in between bounces twice rather than never.
	var recs []spool.Record
	var outcomes []Outcome
	var bounce, delayed []dsnRcpt
	stillDeferred := 0
	for _, r := range remaining {
		res, ok := results[r]
		if !ok {
			stillDeferred++ // not tried (destination busy)
			continue
		}
		reply := replyOf(res)
		q.m.result(statusWord(res.Err), now.Sub(arrived))
		q.log.Info("delivery", "id", id, "rcpt", r, "status", statusWord(res.Err), "reply", reply, "delay", now.Sub(arrived).Round(time.Millisecond))
		if q.cfg.Outcomes != nil && !(shutdown && res.Err != nil && !IsPermanent(res.Err)) {
			status := map[string]string{"delivered": "delivered", "failed": "bounced", "deferred": "deferred"}[statusWord(res.Err)]
			outcomes = append(outcomes, Outcome{QueueID: id, Rcpt: r, From: env.From, Status: status, Reply: reply,
				Dest: dests[r], Arrived: arrived, Time: now})
		}
		switch {
		case res.Err == nil:
			recs = append(recs, spool.Record{Op: spool.OpRcpt, Rcpt: r, State: spool.Delivered, Reply: reply})
		case IsPermanent(res.Err):
			if env.From != "" && notifyAllows(env, r, dsnFailed) {
				bounce = append(bounce, dsnRcpt{Rcpt: r, Reply: reply, When: now})
			}
			recs = append(recs, spool.Record{Op: spool.OpRcpt, Rcpt: r, State: spool.Failed, Reply: reply, DSN: true})
		default:
			stillDeferred++
			if !shutdown {
				recs = append(recs, spool.Record{Op: spool.OpRcpt, Rcpt: r, State: spool.Deferred, Reply: reply})
			}
			if env.From != "" && notifyAllows(env, r, dsnDelayed) {
				delayed = append(delayed, dsnRcpt{Rcpt: r, Reply: reply, When: now})
			}
		}
	}
	if len(bounce) > 0 {
		if err := q.sendDSN(ctx, env, msg, dsnFailed, bounce, time.Time{}); err != nil {
			// Keep those recipients undecided: they fail again, and bounce, next time.
			q.log.Error("delivery: cannot queue bounce; retrying later", "id", id, "err", err)
			recs = dropFailed(recs)
			outcomes = slices.DeleteFunc(outcomes, func(o Outcome) bool { return o.Status == "bounced" })
			stillDeferred += len(bounce)
		}
	}

	if stillDeferred == 0 {
		err := q.sp.Complete(id, recs...)
		if err == nil || errors.Is(err, spool.ErrNotFound) {
			if err == nil {
				q.report(outcomes, true)
			}
			return time.Time{}, false, true, busy
		}
		q.log.Error("delivery: cannot remove delivered message", "id", id, "err", err)
		// Fall through: record the results so they are not lost.
	}
	if shutdown && len(recs) == 0 {
		return time.Time{}, false, false, busy
	}

	tried := len(results) > 0
	if len(busy) > 0 {
		// Some destination was at its limit: come back soon for those recipients.
		next = now.Add(time.Second + rand.N(time.Second))
	} else {
		next = now.Add(q.backoff(st.Attempts + 1))
	}
	if expiry := arrived.Add(q.cfg.MaxLifetime); next.After(expiry) && now.Before(expiry) {
		next = expiry.Add(time.Second)
	}
	if !shutdown && tried {
		recs = append(recs, spool.Record{Op: spool.OpDefer, Next: next.UTC(), Reply: lastReply(delayed, st.LastReply)})
	}
	// RFC 3464 "delayed": one warning per message once it has waited DelayWarning.
	if !q.cfg.DisableDelayWarning && !st.Warned && len(delayed) > 0 && now.Sub(arrived) >= q.cfg.DelayWarning && !shutdown {
		if err := q.sendDSN(ctx, env, msg, dsnDelayed, delayed, arrived.Add(q.cfg.MaxLifetime)); err != nil {
			q.log.Error("delivery: cannot queue delay warning", "id", id, "err", err)
		} else {
			recs = append(recs, spool.Record{Op: spool.OpWarned})
		}
	}
	if len(recs) == 0 {
		return next, false, false, busy
	}
	if err := q.sp.Append(id, recs...); err != nil {
		if errors.Is(err, spool.ErrNotFound) { // deleted by the administrator meanwhile
			return time.Time{}, false, true, busy
		}
		q.log.Error("delivery: cannot record delivery status", "id", id, "err", err)
		return retry, false, false, busy
	}
	q.report(outcomes, false)
	if shutdown {
		return time.Time{}, false, false, busy
	}
	return next, false, false, busy
}

// deliverGroups routes recipients, groups them by destination and delivers each group
// whose destination has a free slot. It fills results and returns the destinations it
// skipped because they were at their concurrency limit.
func (q *Manager) deliverGroups(ctx context.Context, env spool.Envelope, msg *spool.Message, rcpts []string, results map[string]Result, dests map[string]string) (busy []string) {
	var order []string
	groups := map[string]*group{}
	for _, r := range rcpts {
		route, err := q.router.Route(ctx, r)
		if err != nil {
			results[r] = Result{Rcpt: r, Err: err}
			continue
		}
		if route.Transport == nil {
			results[r] = Result{Rcpt: r, Err: Permanent("554 5.4.4 no transport for <"+r+">", nil)}
			continue
		}
		to := r
		if route.Rcpt != "" {
			to = route.Rcpt
		}
		g := groups[route.Dest]
		if g == nil {
			g = &group{route: route}
			groups[route.Dest] = g
			order = append(order, route.Dest)
		}
		g.rcpts = append(g.rcpts, r)
		g.to = append(g.to, to)
		dests[r] = route.Dest
	}
	for _, dest := range order {
		g := groups[dest]
		if !q.acquire(dest) {
			busy = append(busy, dest)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
		res := g.route.Transport.Deliver(actx, env, g.to, io.NewSectionReader(msg, 0, msg.Size()))
		cancel()
		q.release(dest)
		for i, r := range g.rcpts {
			if i < len(res) {
				res[i].Rcpt = r
				results[r] = res[i]
			} else {
				results[r] = Result{Rcpt: r, Err: errorf("transport for %s returned no result", dest)}
			}
		}
	}
	return busy
}

// limit is the concurrency limit of one destination.
func (c *Config) limit(dest string) int {
	if n, ok := c.DestinationLimits[dest]; ok && n > 0 {
		return n
	}
	return c.PerDestination
}

func (q *Manager) acquire(dest string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.destBusy[dest] >= q.cfg.limit(dest) {
		return false
	}
	q.destBusy[dest]++
	return true
}

// release frees a slot of dest and makes the first message waiting for it due now.
func (q *Manager) release(dest string) {
	q.mu.Lock()
	if q.destBusy[dest]--; q.destBusy[dest] <= 0 {
		delete(q.destBusy, dest)
	}
	woke := false
	w := q.destWait[dest]
	for len(w) > 0 && !woke {
		e := w[0]
		w = w[1:]
		if q.msgs[e.id] == e && !e.active && e.index >= 0 { // still waiting in the schedule
			e.next = time.Time{}
			heap.Fix(&q.sched, e.index)
			woke = true
		}
	}
	if len(w) == 0 {
		delete(q.destWait, dest)
	} else {
		q.destWait[dest] = w
	}
	q.mu.Unlock()
	if woke {
		q.wake()
	}
}

// backoff is the wait after the n-th failed attempt: MinBackoff·2^(n-1) capped at
// MaxBackoff, with ±25% jitter so that messages deferred together do not retry together.
func (q *Manager) backoff(n int) time.Duration {
	d := q.cfg.MinBackoff
	for i := 1; i < n && d < q.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, q.cfg.MaxBackoff)
	return d*3/4 + rand.N(d/2+1)
}

func (q *Manager) sendDSN(ctx context.Context, env spool.Envelope, msg *spool.Message, kind dsnKind, rcpts []dsnRcpt, until time.Time) error {
	denv, r, err := buildDSN(q.cfg.Hostname, env, msg, kind, rcpts, until, q.now())
	if err != nil {
		return err
	}
	id, err := q.sp.Enqueue(context.WithoutCancel(ctx), denv, r)
	if err != nil {
		return err
	}
	q.m.dsn(map[dsnKind]string{dsnFailed: "failed", dsnDelayed: "delayed"}[kind])
	q.log.Info("delivery: queued DSN", "id", id, "about", env.ID, "to", env.From, "action", map[dsnKind]string{dsnFailed: "failed", dsnDelayed: "delayed"}[kind])
	return nil
}

// report hands the outcomes of one attempt, recorded in the queue, to Config.Outcomes.
func (q *Manager) report(outcomes []Outcome, removed bool) {
	if q.cfg.Outcomes == nil || len(outcomes) == 0 {
		return
	}
	outcomes[len(outcomes)-1].Removed = removed
	for _, o := range outcomes {
		q.cfg.Outcomes.RecordOutcome(o)
	}
}

func dropFailed(recs []spool.Record) []spool.Record {
	out := recs[:0]
	for _, r := range recs {
		if r.Op != spool.OpRcpt || r.State != spool.Failed {
			out = append(out, r)
		}
	}
	return out
}

func lastReply(d []dsnRcpt, prev string) string {
	if len(d) > 0 {
		return d[len(d)-1].Reply
	}
	return prev
}

func statusWord(err error) string {
	switch {
	case err == nil:
		return "delivered"
	case IsPermanent(err):
		return "failed"
	default:
		return "deferred"
	}
}

// schedule is a min-heap of entries by next attempt time.
type schedule []*entry

func (s schedule) Len() int { return len(s) }
func (s schedule) Less(i, j int) bool {
	if s[i].next.Equal(s[j].next) {
		return s[i].id < s[j].id
	}
	return s[i].next.Before(s[j].next)
}
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index, s[j].index = i, j
}
func (s *schedule) Push(x any) {
	e := x.(*entry)
	e.index = len(*s)
	*s = append(*s, e)
}
func (s *schedule) Pop() any {
	old := *s
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*s = old[:len(old)-1]
	return e
}
