package policy

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Middleware wraps a policy instance, net/http style: timeouts, caching and metrics are
// wrappers rather than code inside each policy. name is the instance name.
type Middleware func(name string, p Policy) Policy

// CheckFunc runs one stage of the wrapped policy.
type CheckFunc func(ctx context.Context) Result

// Wrap returns a policy that serves exactly the stages p serves and declares the same facts,
// and runs around(ctx, stage, tx, next) for every check, where next calls p.
func Wrap(p Policy, around func(ctx context.Context, s Stage, tx *Transaction, next CheckFunc) Result) Policy {
	return &wrapped{inner: p, stages: Serves(p), around: around}
}

type wrapped struct {
	inner  Policy
	stages []Stage
	around func(ctx context.Context, s Stage, tx *Transaction, next CheckFunc) Result
	msg    bool // ExtendMsg
}

// ExtendMsg makes the facts of a data-stage policy extend `msg` in rules (msg.attachments
// rather than content.attachments); see MsgFactProvider.
func ExtendMsg(p Policy) Policy {
	w := Wrap(p, func(ctx context.Context, s Stage, tx *Transaction, next CheckFunc) Result { return next(ctx) }).(*wrapped)
	w.msg = true
	return w
}

func (w *wrapped) call(ctx context.Context, s Stage, tx *Transaction) Result {
	return w.around(ctx, s, tx, func(ctx context.Context) Result { return check(ctx, w.inner, s, tx) })
}

func (w *wrapped) CheckConnect(ctx context.Context, tx *Transaction) Result {
	return w.call(ctx, StageConnect, tx)
}
func (w *wrapped) CheckHelo(ctx context.Context, tx *Transaction) Result {
	return w.call(ctx, StageHelo, tx)
}
func (w *wrapped) CheckMail(ctx context.Context, tx *Transaction) Result {
	return w.call(ctx, StageMail, tx)
}
func (w *wrapped) CheckRcpt(ctx context.Context, tx *Transaction) Result {
	return w.call(ctx, StageRcpt, tx)
}
func (w *wrapped) CheckData(ctx context.Context, tx *Transaction) Result {
	return w.call(ctx, StageData, tx)
}

// Stages overrides the type assertions in Serves: a wrapper serves what it wraps.
func (w *wrapped) Stages() []Stage { return w.stages }

// Close closes the wrapped policy when it holds resources (io.Closer).
func (w *wrapped) Close() error {
	if c, ok := w.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Unwrap returns the wrapped policy.
func (w *wrapped) Unwrap() Policy { return w.inner }

func (w *wrapped) DeclareFacts() map[string]any {
	if d, ok := w.inner.(FactDeclarer); ok {
		return d.DeclareFacts()
	}
	return nil
}

// Bounded forwards the wrapped policy's Bounded.
func (w *wrapped) Bounded() bool { return isBounded(w.inner) }

func (w *wrapped) ProvidesMsgFacts() bool {
	if w.msg {
		return true
	}
	mp, ok := w.inner.(MsgFactProvider)
	return ok && mp.ProvidesMsgFacts()
}

// Timeout bounds every check of the wrapped policy. A policy that honours its context
// returns by itself; one that does not is abandoned (its goroutine finishes in the
// background) and the result is a temperror, so a hung peer never hangs the SMTP session.
func Timeout(d time.Duration) Middleware {
	return func(name string, p Policy) Policy {
		if isBounded(p) {
			return p // finishes by itself: no watchdog needed
		}
		return Wrap(p, func(ctx context.Context, s Stage, tx *Transaction, next CheckFunc) Result {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			ch := make(chan Result, 1)
			go func() {
				defer func() {
					if v := recover(); v != nil {
						ch <- Result{Status: StatusTempError, Reason: "policy.panic", Err: fmt.Errorf("policy %s panicked: %v", name, v)}
					}
				}()
				ch <- next(ctx)
			}()
			select {
			case r := <-ch:
				return r
			case <-ctx.Done():
				return Result{Status: StatusTempError, Reason: "policy.timeout", Err: fmt.Errorf("policy %s: no result within %s: %w", name, d, ctx.Err())}
			}
		})
	}
}

// Cache remembers results across transactions for ttl, keyed by key(stage, tx); an empty
// key disables caching for that check. Temporary errors are not cached. Use it for
// connect-stage lookups that clients repeat (an RBL result per client IP).
func Cache(ttl time.Duration, maxEntries int, key func(s Stage, tx *Transaction) string) Middleware {
	return func(name string, p Policy) Policy {
		type entry struct {
			r   Result
			exp time.Time
		}
		var mu sync.Mutex
		m := map[string]entry{}
		return Wrap(p, func(ctx context.Context, s Stage, tx *Transaction, next CheckFunc) Result {
			k := key(s, tx)
			if k == "" {
				return next(ctx)
			}
			k = s.String() + "\x00" + k
			now := time.Now()
			mu.Lock()
			if e, ok := m[k]; ok && now.Before(e.exp) {
				mu.Unlock()
				return e.r
			}
			mu.Unlock()
			r := next(ctx)
			if r.Status == StatusTempError {
				return r
			}
			mu.Lock()
			if len(m) >= maxEntries {
				for k2, e := range m { // drop expired entries, or an arbitrary one
					if now.After(e.exp) || len(m) >= maxEntries {
						delete(m, k2)
					}
					if len(m) < maxEntries*3/4 {
						break
					}
				}
			}
			m[k] = entry{r, now.Add(ttl)}
			mu.Unlock()
			return r
		})
	}
}

// Metrics are the engine's Prometheus collectors.
type Metrics struct {
	results   *prometheus.CounterVec
	policyDur *prometheus.HistogramVec
	rules     *prometheus.CounterVec
	decisions *prometheus.CounterVec
	stageDur  *prometheus.HistogramVec
	ruleErrs  *prometheus.CounterVec
}

// NewMetrics creates and registers the collectors (reg may be nil for unregistered ones).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_policy_results_total", Help: "Policy checks by instance and status.",
		}, []string{"policy", "status"}),
		policyDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_policy_duration_seconds", Help: "Time a policy check took.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"policy"}),
		rules: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_rule_matches_total", Help: "Rule matches by rule and action (log_only matches count as action dry_run).",
		}, []string{"rule", "action"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_decisions_total", Help: "Stage decisions by stage, verdict and the deciding rule's category (\"\" when no rule decided).",
		}, []string{"stage", "verdict", "category"}),
		stageDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_stage_duration_seconds", Help: "Time to reach a stage decision, policies included.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10),
		}, []string{"stage"}),
		ruleErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_rule_errors_total", Help: "Rule evaluations that failed at run time (the rule did not match).",
		}, []string{"rule"}),
	}
	if reg != nil {
		reg.MustRegister(m.results, m.policyDur, m.rules, m.decisions, m.stageDur, m.ruleErrs)
	}
	return m
}

// Instrument is the metrics middleware: result counts by status and check latency.
func (m *Metrics) Instrument() Middleware {
	return func(name string, p Policy) Policy {
		return Wrap(p, func(ctx context.Context, s Stage, tx *Transaction, next CheckFunc) Result {
			start := time.Now()
			r := next(ctx)
			m.policyDur.WithLabelValues(name).Observe(time.Since(start).Seconds())
			m.results.WithLabelValues(name, string(r.Status)).Inc()
			return r
		})
	}
}
