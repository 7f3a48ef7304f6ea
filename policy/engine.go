package policy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"
)

// EngineConfig configures an Engine.
type EngineConfig struct {
	Rules []RuleSpec
	// Policies are the configured instances by name (the names rules use).
	Policies map[string]Policy
	// LocalDomains and Hostname feed the HELO checks (helo.ours) and `hostname` in rules.
	LocalDomains []string
	Hostname     string
	// Timeout bounds each policy check (default 30s); a policy may have a shorter one of its
	// own through the Timeout middleware.
	Timeout time.Duration
	// Middleware wraps every instance, first element outermost.
	Middleware []Middleware
	Logger     *slog.Logger
	Metrics    *Metrics // nil: no metrics
	// SenderLists answers rcpt.allows_sender and rcpt.blocks_sender; nil: both false.
	// It is asked only when a rule references them.
	SenderLists SenderLists
	// CloseDelay is how long Reload waits before closing the replaced policies that hold
	// resources (databases, connection pools), so that transactions still using them
	// finish first (default 10m, longer than any SMTP transaction's policy work).
	CloseDelay time.Duration
}

// SenderLists are the recipients' own lists of senders always allowed or blocked. Listed
// returns "allow", "block" or "" for the sender (an address, "" for the null sender) and
// the recipient. quarantine.Lists, through the router's alias expansion, implements it.
type SenderLists interface {
	Listed(ctx context.Context, rcpt, sender string) (string, error)
}

// Engine evaluates compiled rules for each stage of each transaction. It is safe for
// concurrent use; Reload swaps the rules atomically.
type Engine struct {
	set     atomic.Pointer[ruleSet]
	cfg     EngineConfig
	local   map[string]bool
	log     *slog.Logger
	metrics *Metrics
	vms     sync.Pool
}

// NewEngine compiles the rules against the policies. A compile error is an ErrorList that
// names the file, rule, line and column of every problem.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CloseDelay <= 0 {
		cfg.CloseDelay = 10 * time.Minute
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, local: map[string]bool{}}
	e.vms.New = func() any { return new(vm.VM) }
	for _, d := range cfg.LocalDomains {
		e.local[strings.ToLower(d)] = true
	}
	rs, err := e.build(cfg.Rules, cfg.Policies)
	if err != nil {
		return nil, err
	}
	e.set.Store(rs)
	return e, nil
}

// Compile checks rules against policies without building an engine: what
// `portcullis rules check` runs. It returns every error found.
func Compile(rules []RuleSpec, policies map[string]Policy, localDomains []string) error {
	_, err := compile(rules, CompileOptions{Policies: policies, LocalDomains: localDomains})
	return err
}

func (e *Engine) build(rules []RuleSpec, policies map[string]Policy) (*ruleSet, error) {
	wrapped := make(map[string]Policy, len(policies))
	for name, p := range policies {
		mws := append([]Middleware(nil), e.cfg.Middleware...)
		if e.metrics != nil {
			mws = append(mws, e.metrics.Instrument())
		}
		mws = append(mws, Timeout(e.cfg.Timeout))
		for i := len(mws) - 1; i >= 0; i-- {
			p = mws[i](name, p)
		}
		wrapped[name] = p
	}
	return compile(rules, CompileOptions{Policies: wrapped, LocalDomains: e.cfg.LocalDomains})
}

// Reload compiles a new rule set and swaps it in. On error the old rules stay in force.
// Transactions in progress finish with the results they already have.
func (e *Engine) Reload(rules []RuleSpec, policies map[string]Policy) error {
	rs, err := e.build(rules, policies)
	if err != nil {
		return err
	}
	old := e.set.Swap(rs)
	keep := rs.innerPointers()
	time.AfterFunc(e.cfg.CloseDelay, func() { old.close(e.log, keep) })
	return nil
}

// Close closes the policies of the current rules that hold resources. The engine must
// not be used afterwards.
func (e *Engine) Close() error {
	e.set.Load().close(e.log, nil)
	return nil
}

// inner returns the policy behind any wrappers.
func inner(p Policy) Policy {
	for {
		u, ok := p.(interface{ Unwrap() Policy })
		if !ok {
			return p
		}
		p = u.Unwrap()
	}
}

// pointerOf identifies a policy instance (pointer types only; 0 for others).
func pointerOf(p Policy) uintptr {
	if v := reflect.ValueOf(inner(p)); v.Kind() == reflect.Pointer {
		return v.Pointer()
	}
	return 0
}

// innerPointers identifies the instances of the rule set, so that a reload that reuses an
// instance does not close it.
func (rs *ruleSet) innerPointers() map[uintptr]bool {
	out := map[uintptr]bool{}
	for _, in := range rs.instances {
		if ptr := pointerOf(in.p); ptr != 0 {
			out[ptr] = true
		}
	}
	return out
}

// close closes every instance that is an io.Closer, except those still in use (keep).
func (rs *ruleSet) close(log *slog.Logger, keep map[uintptr]bool) {
	for name, in := range rs.instances {
		if ptr := pointerOf(in.p); ptr != 0 && keep[ptr] {
			continue
		}
		if c, ok := in.p.(io.Closer); ok {
			if err := c.Close(); err != nil {
				log.Warn("closing a replaced policy failed", "policy", name, "err", err)
			}
		}
	}
}

// RuleCount returns the number of compiled rules per stage.
func (e *Engine) RuleCount() map[Stage]int {
	rs := e.set.Load()
	out := map[Stage]int{}
	for s := range numStages {
		if n := len(rs.rules[s]); n > 0 {
			out[Stage(s)] = n
		}
	}
	return out
}

// Trace receives what each rule saw and decided (for `portcullis rules test`).
type Trace func(rule string, stage Stage, matched bool, err error, logOnly bool)

type traceKey struct{}

// WithTrace returns a context under which Evaluate reports every rule evaluation to t.
func WithTrace(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// Evaluate runs the policies the stage's rules reference (those not already memoised for
// this transaction, concurrently), then the stage's rules in file order, and returns the
// decision. It never panics on a policy's behalf and never blocks longer than the policy
// timeout.
func (e *Engine) Evaluate(ctx context.Context, stage Stage, tx *Transaction) Decision {
	start := time.Now()
	rs := e.set.Load()
	d := Decision{Stage: stage, Results: e.run(ctx, rs, stage, tx)}
	if tx.Hostname == "" {
		tx.Hostname = e.cfg.Hostname
	}
	env := e.env(rs, stage, tx, d.Results)
	if stage == StageRcpt && rs.rcptLists && e.cfg.SenderLists != nil {
		e.senderLists(ctx, env, tx)
	}
	v := e.vms.Get().(*vm.VM)
	defer e.vms.Put(v)
	trace, _ := ctx.Value(traceKey{}).(Trace)
	acc := tx.acc(stage)
	for _, r := range rs.rules[stage] {
		env["score"] = tx.Score()
		env["tags"] = tx.Tags()
		out, err := v.Run(r.prog, env)
		matched, _ := out.(bool)
		if trace != nil {
			trace(r.name, stage, matched && err == nil, err, r.logOnly)
		}
		if err != nil {
			e.log.Warn("rule failed at run time; treated as not matching", "rule", r.name, "stage", stage.String(), "id", tx.Conn.ID, "err", err)
			if e.metrics != nil {
				e.metrics.ruleErrs.WithLabelValues(r.name).Inc()
			}
			continue
		}
		if !matched {
			continue
		}
		if r.logOnly {
			d.DryRun = append(d.DryRun, r.name)
			if e.metrics != nil {
				e.metrics.rules.WithLabelValues(r.name, "dry_run").Inc()
			}
			continue
		}
		if e.metrics != nil {
			e.metrics.rules.WithLabelValues(r.name, r.action()).Inc()
		}
		acc.score += r.score
		d.Score += r.score
		for _, t := range r.tags {
			acc.tags = append(acc.tags, t)
			d.Tags = append(d.Tags, t)
		}
		for _, h := range r.headers {
			hdr := Header{Name: h.name, Value: h.value.render(v, env)}
			acc.headers = append(acc.headers, hdr)
		}
		if r.verdict != Continue {
			d.Verdict, d.Rule, d.Category = r.verdict, r.name, r.category
			d.Reply = r.renderReply(v, env)
			break
		}
	}
	if d.Terminal() && d.Reply.Code == 0 {
		d.Reply = DefaultReply(d.Verdict)
	}
	if stage >= StageData {
		d.Headers = tx.HeadersToAdd()
	}
	elapsed := time.Since(start)
	if e.metrics != nil {
		e.metrics.decisions.WithLabelValues(stage.String(), d.Verdict.String(), d.Category).Inc()
		e.metrics.stageDur.WithLabelValues(stage.String()).Observe(elapsed.Seconds())
	}
	e.logDecision(ctx, stage, tx, d, elapsed)
	return d
}

// renderReply returns the rule's reply with its templates filled in. A reply rendered
// whole at run time must parse and have the class of the verdict; otherwise the default
// code is used with the rendered text.
func (r *rule) renderReply(v *vm.VM, env map[string]any) Reply {
	if r.tmpl == nil {
		return r.reply
	}
	text := r.tmpl.render(v, env)
	if !r.dynamic {
		rep := r.reply
		rep.Text = text
		return rep
	}
	rep, err := ParseReply(text)
	want := map[Verdict]int{Reject: 5, Tempfail: 4, Accept: 2}[r.verdict]
	if err != nil || rep.Code/100 != want {
		rep = DefaultReply(r.verdict)
		if t := strings.TrimSpace(text); t != "" && r.verdict != Accept {
			rep.Text = t
		}
	}
	return rep
}

func (r *rule) action() string {
	if r.verdict != Continue {
		return r.verdict.String()
	}
	switch {
	case r.score != 0:
		return "score"
	case len(r.headers) > 0:
		return "add_header"
	}
	return "tag"
}

// run makes sure every instance the stage needs has a result, running the missing ones
// concurrently, and returns the results by instance name.
func (e *Engine) run(ctx context.Context, rs *ruleSet, stage Stage, tx *Transaction) map[string]Result {
	deps := rs.deps[stage]
	results := make(map[string]Result, len(deps))
	if len(deps) == 0 {
		return results
	}
	type job struct {
		name string
		in   *instance
		key  memoKey
	}
	var todo []job
	for _, name := range deps {
		in := rs.instances[name]
		st, _ := in.latest(stage)
		k := memoKey{instance: name, stage: st}
		if st == StageRcpt {
			k.rcpt = tx.Rcpt.String()
		}
		if r, ok := tx.memo.get(k); ok {
			results[name] = r
			continue
		}
		todo = append(todo, job{name, in, k})
	}
	if len(todo) == 1 {
		j := todo[0]
		r := safeCheck(ctx, j.name, j.in.p, j.key.stage, tx)
		tx.memo.put(j.key, r)
		results[j.name] = r
		return results
	}
	// Checks that may wait (DNS, clamd) start first, each in its own goroutine; bounded
	// ones then run here, overlapping with those waits.
	out := make([]Result, len(todo))
	var wg sync.WaitGroup
	var inline []int
	for i, j := range todo {
		if isBounded(j.in.p) {
			inline = append(inline, i)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = safeCheck(ctx, j.name, j.in.p, j.key.stage, tx)
		}()
	}
	for _, i := range inline {
		out[i] = safeCheck(ctx, todo[i].name, todo[i].in.p, todo[i].key.stage, tx)
	}
	wg.Wait()
	for i, j := range todo {
		tx.memo.put(j.key, out[i])
		results[j.name] = out[i]
	}
	return results
}

// safeCheck runs one check and turns a panic into a temperror with the stack logged.
func safeCheck(ctx context.Context, name string, p Policy, s Stage, tx *Transaction) (r Result) {
	defer func() {
		if v := recover(); v != nil {
			slog.Error("policy panicked", "policy", name, "stage", s.String(), "panic", v, "stack", string(debug.Stack()))
			r = Result{Status: StatusTempError, Reason: "policy.panic", Err: fmt.Errorf("policy %s panicked: %v", name, v)}
		}
	}()
	r = check(ctx, p, s, tx)
	if r.Status == "" {
		r.Status = StatusNone
	}
	return r
}

// env builds the rule environment of a stage.
func (e *Engine) env(rs *ruleSet, stage Stage, tx *Transaction, results map[string]Result) map[string]any {
	env := make(map[string]any, 12+len(results))
	env["client"] = clientEnv(&tx.Conn)
	env["hostname"] = tx.Hostname
	if stage >= StageHelo {
		env["helo"] = heloEnv(tx, e.local)
	}
	if stage >= StageMail {
		env["sender"] = senderEnv(&tx.Envelope, e.local)
	}
	if stage >= StageRcpt {
		rcpts := make([]string, len(tx.Envelope.Rcpts))
		for i, a := range tx.Envelope.Rcpts {
			rcpts[i] = a.String()
		}
		env["rcpts"] = rcpts
		env["rcpt_count"] = len(rcpts)
		if stage == StageRcpt {
			env["rcpt"] = addressEnv(tx.Rcpt, nil, e.local)
		}
	}
	if stage >= StageData {
		var provided []Result
		for _, p := range rs.providers {
			if r, ok := results[p]; ok {
				provided = append(provided, r)
			}
		}
		env["msg"] = rs.msgView.msgValue(buildMsgBase(tx.Message), provided)
		m := tx.Message
		env["header"] = func(name string) string {
			if m == nil {
				return ""
			}
			return m.Header.Get(name)
		}
		env["headers"] = func(name string) []string {
			if m == nil {
				return nil
			}
			return m.Header.Values(name)
		}
	}
	for name, r := range results {
		env[name] = rs.instances[name].view.resultValue(r)
	}
	return env
}

func (e *Engine) logDecision(ctx context.Context, stage Stage, tx *Transaction, d Decision, elapsed time.Duration) {
	// The SMTP server writes the one Info record per stage (with the transport facts and
	// these results); this Debug record adds the rule-level detail.
	level := slog.LevelDebug
	if !e.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", tx.Conn.ID),
		slog.String("stage", stage.String()),
		slog.String("client", tx.Conn.IP.String()),
		slog.String("verdict", d.Verdict.String()),
	}
	if stage >= StageMail {
		attrs = append(attrs, slog.String("from", tx.Envelope.From.Raw))
	}
	if stage == StageRcpt {
		attrs = append(attrs, slog.String("rcpt", tx.Rcpt.String()))
	}
	if d.Rule != "" {
		attrs = append(attrs, slog.String("rule", d.Rule), slog.String("reply", d.Reply.String()))
	}
	if d.Score != 0 {
		attrs = append(attrs, slog.Float64("score", d.Score))
	}
	if len(d.DryRun) > 0 {
		attrs = append(attrs, slog.Any("log_only", d.DryRun))
	}
	if len(d.Results) > 0 {
		ra := make([]any, 0, len(d.Results))
		for name, r := range d.Results {
			v := string(r.Status)
			if r.Reason != "" {
				v += " " + r.Reason
			}
			if r.Err != nil {
				v += " (" + r.Err.Error() + ")"
			}
			ra = append(ra, slog.String(name, v))
		}
		attrs = append(attrs, slog.Group("policies", ra...))
	}
	attrs = append(attrs, slog.Duration("took", elapsed))
	e.log.LogAttrs(ctx, level, "policy decision", attrs...)
}

// senderLists fills rcpt.allows_sender and rcpt.blocks_sender. A lookup that fails is
// logged and leaves both false: a list is the user's preference, not a reason to refuse.
func (e *Engine) senderLists(ctx context.Context, env map[string]any, tx *Transaction) {
	r, ok := env["rcpt"].(AddressEnv)
	if !ok || r.Null {
		return
	}
	from := ""
	if !tx.Envelope.From.IsNull() {
		from = tx.Envelope.From.String()
	}
	kind, err := e.cfg.SenderLists.Listed(ctx, r.Address, from)
	if err != nil {
		e.log.Warn("sender lists lookup failed", "rcpt", r.Address, "sender", from, "err", err.Error())
		return
	}
	r.AllowsSender, r.BlocksSender = kind == "allow", kind == "block"
	env["rcpt"] = r
}
