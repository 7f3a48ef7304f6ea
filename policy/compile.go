package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/portcullis-mail/portcullis/address"
)

// MsgFactProvider is implemented by data-stage policies whose facts extend `msg` in rules
// (msg.attachments, msg.date_skew, ...) instead of living under their instance name. A
// rule that names such a fact makes the engine run the provider.
type MsgFactProvider interface {
	ProvidesMsgFacts() bool
}

// Root names of the rule environment and the first stage each is known at.
var rootStages = map[string]Stage{
	"client":     StageConnect,
	"score":      StageConnect,
	"tags":       StageConnect,
	"hostname":   StageConnect,
	"helo":       StageHelo,
	"sender":     StageMail,
	"rcpt":       StageRcpt,
	"rcpts":      StageRcpt,
	"rcpt_count": StageRcpt,
	"msg":        StageData,
	"header":     StageData,
	"headers":    StageData,
}

// instance is a configured policy as the compiled rules see it.
type instance struct {
	name     string
	p        Policy
	serves   []Stage
	view     *viewType
	provider bool // its facts extend msg
}

// latest returns the latest stage <= s that the instance serves.
func (in *instance) latest(s Stage) (Stage, bool) {
	best, ok := Stage(-1), false
	for _, st := range in.serves {
		if st <= s && st > best {
			best, ok = st, true
		}
	}
	return best, ok
}

type rule struct {
	name    string
	stage   Stage
	file    string
	line    int
	src     string
	prog    *vm.Program
	verdict Verdict
	reply   Reply
	tmpl    *template // reply text with {{ }} parts, nil when plain
	dynamic bool      // tmpl renders the whole reply, code included
	score   float64
	headers []headerTmpl
	tags    []string
	logOnly bool
	deps    []string // policy instances the rule references
	// category is the rule's category: RuleSpec.Category, or its name.
	category string
}

type headerTmpl struct {
	name  string
	value *template
}

// ruleSet is a compiled rule file: immutable, swapped atomically on reload.
type ruleSet struct {
	rules     [numStages][]*rule
	deps      [numStages][]string // instances to run at each stage
	instances map[string]*instance
	providers []string // msg fact providers, sorted
	msgView   *viewType
	msgFacts  map[string]string // msg fact -> provider instance
	envs      [numStages]map[string]any
	// rcptLists: a rule references rcpt.allows_sender or rcpt.blocks_sender, so the
	// engine looks the recipient's sender lists up at the rcpt stage.
	rcptLists bool
}

// CompileOptions are the inputs of Compile besides the rules.
type CompileOptions struct {
	// Policies are the configured instances by name; names must be identifiers and must
	// not shadow a root of the environment (client, msg, ...).
	Policies map[string]Policy
	// LocalDomains are our own domains (the HELO check helo.ours uses them).
	LocalDomains []string
}

var staticFuncs = []expr.Option{
	expr.Function("in_cidr", func(p ...any) (any, error) {
		ip, err := netip.ParseAddr(p[0].(string))
		if err != nil {
			return false, nil
		}
		ip = ip.Unmap()
		for _, c := range p[1:] {
			pfx, err := parsePrefix(c.(string))
			if err != nil {
				return nil, err
			}
			if pfx.Contains(ip) {
				return true, nil
			}
		}
		return false, nil
	}, new(func(string, ...string) bool)),
	expr.Function("is_ip", func(p ...any) (any, error) {
		_, err := netip.ParseAddr(p[0].(string))
		return err == nil, nil
	}, new(func(string) bool)),
	expr.Function("domain_of", func(p ...any) (any, error) {
		return address.Domain(p[0].(string)), nil
	}, new(func(string) string)),
	expr.Function("is_subdomain", func(p ...any) (any, error) {
		d, parent := strings.ToLower(strings.TrimSuffix(p[0].(string), ".")), strings.ToLower(strings.TrimSuffix(p[1].(string), "."))
		return d == parent || strings.HasSuffix(d, "."+parent), nil
	}, new(func(string, string) bool)),
}

var prefixCache sync.Map // string -> netip.Prefix

func parsePrefix(s string) (netip.Prefix, error) {
	if p, ok := prefixCache.Load(s); ok {
		return p.(netip.Prefix), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		ip, err2 := netip.ParseAddr(s)
		if err2 != nil {
			return netip.Prefix{}, fmt.Errorf("in_cidr: %q is neither a CIDR nor an address", s)
		}
		p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-map[bool]int{true: 96, false: 0}[p.Addr().Is4In6()]).Masked()
	prefixCache.Store(s, p)
	return p, nil
}

// Compile builds the rule set. It returns every error it finds (an ErrorList) and no rule
// set when there is any.
func compile(specs []RuleSpec, opts CompileOptions) (*ruleSet, error) {
	rs := &ruleSet{instances: map[string]*instance{}, msgFacts: map[string]string{}}
	var errs ErrorList
	names := make([]string, 0, len(opts.Policies))
	for n := range opts.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	msgFactTypes := map[string]any{}
	for _, n := range names {
		p := opts.Policies[n]
		if !isIdent(n) {
			errs = append(errs, fmt.Errorf("policy %q: the name must be an identifier (letters, digits, _)", n))
			continue
		}
		if _, ok := rootStages[n]; ok || n == "now" {
			errs = append(errs, fmt.Errorf("policy %q: the name is taken by the rule environment", n))
			continue
		}
		in := &instance{name: n, p: p, serves: Serves(p)}
		if len(in.serves) == 0 {
			errs = append(errs, fmt.Errorf("policy %q (%T) serves no stage", n, p))
			continue
		}
		var facts map[string]any
		if d, ok := p.(FactDeclarer); ok {
			facts = d.DeclareFacts()
		}
		vt, err := newViewType(resultFields, facts)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy %q: %w", n, err))
			continue
		}
		in.view = vt
		if mp, ok := p.(MsgFactProvider); ok && mp.ProvidesMsgFacts() {
			in.provider = true
			rs.providers = append(rs.providers, n)
			for f, v := range facts {
				if prev, dup := rs.msgFacts[f]; dup {
					errs = append(errs, fmt.Errorf("policies %q and %q both provide msg.%s", prev, n, f))
				}
				rs.msgFacts[f] = n
				msgFactTypes[f] = v
			}
		}
		rs.instances[n] = in
	}
	mv, err := newViewType(msgFixed, msgFactTypes)
	if err != nil {
		errs = append(errs, err)
	} else {
		rs.msgView = mv
	}
	if len(errs) > 0 {
		return nil, errs
	}
	local := map[string]bool{}
	for _, d := range opts.LocalDomains {
		local[strings.ToLower(d)] = true
	}
	for s := range numStages {
		rs.envs[s] = rs.compileEnv(Stage(s))
	}

	seen := map[string]bool{}
	var depSets [numStages]map[string]bool
	for i := range depSets {
		depSets[i] = map[string]bool{}
	}
	for _, spec := range specs {
		r, rerrs := rs.compileRule(spec)
		if len(rerrs) > 0 {
			errs = append(errs, rerrs...)
			continue
		}
		if seen[r.name] {
			errs = append(errs, &RuleError{File: spec.File, Line: spec.Line, Rule: r.name, Msg: "another rule has the same name"})
			continue
		}
		seen[r.name] = true
		rs.rules[r.stage] = append(rs.rules[r.stage], r)
		for _, d := range r.deps {
			depSets[r.stage][d] = true
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for s := range depSets {
		for d := range depSets[s] {
			rs.deps[s] = append(rs.deps[s], d)
		}
		sort.Strings(rs.deps[s])
	}
	return rs, nil
}

// compileEnv returns the typed environment of a stage, with zero values.
func (rs *ruleSet) compileEnv(s Stage) map[string]any {
	env := map[string]any{
		"client":   ClientEnv{},
		"score":    float64(0),
		"tags":     []string{},
		"hostname": "",
	}
	if s >= StageHelo {
		env["helo"] = HeloEnv{}
	}
	if s >= StageMail {
		env["sender"] = SenderEnv{}
	}
	if s >= StageRcpt {
		env["rcpts"] = []string{}
		env["rcpt_count"] = 0
		if s == StageRcpt {
			env["rcpt"] = AddressEnv{}
		}
	}
	if s >= StageData {
		env["msg"] = rs.msgView.zero()
		env["header"] = (func(string) string)(nil)
		env["headers"] = (func(string) []string)(nil)
	}
	for n, in := range rs.instances {
		if _, ok := in.latest(s); ok {
			env[n] = in.view.zero() // a msg fact provider is also reachable by its name
		}
	}
	return env
}

func (rs *ruleSet) compileRule(spec RuleSpec) (*rule, ErrorList) {
	r := &rule{name: spec.Name, file: spec.File, line: spec.Line, src: spec.If, logOnly: spec.LogOnly, score: spec.Score, tags: spec.Tag,
		category: spec.Category}
	if r.category == "" {
		r.category = spec.Name
	}
	var errs ErrorList
	fail := func(line, col int, format string, a ...any) {
		errs = append(errs, &RuleError{File: spec.File, Line: line, Column: col, Rule: spec.Name, Msg: fmt.Sprintf(format, a...)})
	}
	exprErr := func(what string, err error) {
		line, col := spec.IfLine, 0
		var fe *file.Error
		if errors.As(err, &fe) {
			if spec.block {
				line += fe.Line
				col = fe.Column + 1
			} else {
				line += fe.Line - 1
				col = spec.IfColumn + fe.Column
			}
			fail(line, col, "%s: %s%s", what, rs.explain(spec.If, fe.Message), fe.Snippet)
			return
		}
		fail(line, 0, "%s: %v", what, err)
	}

	// Terminal action.
	n := 0
	set := func(v Verdict, text *string) {
		if text == nil {
			return
		}
		n++
		r.verdict = v
		if *text == "" {
			r.reply = DefaultReply(v)
			return
		}
		rep, err := ParseReply(*text)
		if err != nil && strings.HasPrefix(strings.TrimSpace(*text), "{{") {
			// The whole reply comes from a policy at run time, such as a Postfix map's
			// REJECT text: {{maps.reply}}. Checked when rendered (see renderReply).
			r.reply, r.dynamic = Reply{Text: *text}, true
			return
		}
		if err != nil {
			fail(spec.Line, 0, "%v", err)
			return
		}
		switch {
		case v == Reject && rep.Code/100 != 5, v == Tempfail && rep.Code/100 != 4, v == Accept && rep.Code/100 != 2:
			fail(spec.Line, 0, "%s needs a %s reply, not %d", v, map[Verdict]string{Reject: "5xx", Tempfail: "4xx", Accept: "2xx"}[v], rep.Code)
		}
		r.reply = rep
	}
	set(Accept, spec.Accept)
	set(Reject, spec.Reject)
	set(Tempfail, spec.Tempfail)
	if spec.Discard {
		n++
		r.verdict = Discard
	}
	if spec.Quarantine {
		n++
		r.verdict = Quarantine
	}
	if n > 1 {
		fail(spec.Line, 0, "a rule takes at most one of accept, reject, tempfail, discard, quarantine")
	}
	if n == 0 && spec.Score == 0 && len(spec.AddHeader) == 0 && len(spec.Tag) == 0 {
		fail(spec.Line, 0, "rule has no action (accept, reject, tempfail, discard, quarantine, score, add_header or tag)")
	}

	// Parse to learn what the rule references, then pick and check the stage.
	tree, err := parser.Parse(spec.If)
	if err != nil {
		exprErr("if", err)
		return nil, errs
	}
	refs := rs.collect(tree.Node)
	var tmplSrc []string
	if r.reply.Text != "" && strings.Contains(r.reply.Text, "{{") {
		tmplSrc = append(tmplSrc, r.reply.Text)
	}
	for _, h := range spec.AddHeader {
		name, value, ok := strings.Cut(h, ":")
		if !ok || !isHeaderName(strings.TrimSpace(name)) || strings.ContainsAny(value, "\r\n") {
			fail(spec.Line, 0, "add_header %q must be one line of the form Name: value", h)
			continue
		}
		tmplSrc = append(tmplSrc, value)
	}
	for _, t := range tmplSrc {
		for _, part := range templateExprs(t) {
			if tr, err := parser.Parse(part); err == nil {
				refs.merge(rs.collect(tr.Node))
			}
		}
	}
	stage := refs.stage
	if spec.Stage != "" {
		st, err := ParseStage(spec.Stage)
		if err != nil {
			fail(spec.Line, 0, "%v", err)
			return nil, errs
		}
		if st < refs.stage {
			fail(spec.IfLine, spec.IfColumn, "stage %s is too early: %s is known from the %s stage on", st, refs.why, refs.stage)
			return nil, errs
		}
		stage = st
	}
	if stage == StageQueued && n > 0 {
		fail(spec.Line, 0, "rules of the queued stage observe only: use tag, score or log_only")
	}
	r.stage = stage
	env := rs.envs[stage]
	prog, err := expr.Compile(spec.If, append([]expr.Option{expr.Env(env), expr.AsBool()}, staticFuncs...)...)
	if err != nil {
		exprErr("if", err)
	}
	r.prog = prog
	if r.reply.Text != "" && strings.Contains(r.reply.Text, "{{") {
		t, err := compileTemplate(r.reply.Text, env)
		if err != nil {
			fail(spec.Line, 0, "reply: %v", err)
		}
		r.tmpl = t
	}
	for _, h := range spec.AddHeader {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			continue
		}
		t, err := compileTemplate(strings.TrimSpace(value), env)
		if err != nil {
			fail(spec.Line, 0, "add_header: %v", err)
			continue
		}
		r.headers = append(r.headers, headerTmpl{name: strings.TrimSpace(name), value: t})
	}
	for d := range refs.deps {
		r.deps = append(r.deps, d)
	}
	sort.Strings(r.deps)
	return r, errs
}

func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 127 || s[i] == ':' {
			return false
		}
	}
	return true
}

// refs is what an expression references.
type refs struct {
	stage Stage           // the earliest stage at which everything referenced is known
	why   string          // the name that forces that stage
	deps  map[string]bool // policy instances (msg providers included)
}

func (a *refs) need(s Stage, why string) {
	if s > a.stage {
		a.stage, a.why = s, why
	}
}

func (a *refs) merge(b refs) {
	a.need(b.stage, b.why)
	for d := range b.deps {
		a.deps[d] = true
	}
}

type visitor struct {
	rs *ruleSet
	r  refs
}

func (v *visitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if s, ok := rootStages[n.Value]; ok {
			v.r.need(s, n.Value)
			return
		}
		if in, ok := v.rs.instances[n.Value]; ok {
			v.r.deps[n.Value] = true
			// The earliest stage at which the instance has a result.
			first := in.serves[0]
			v.r.need(first, n.Value)
		}
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if ok && id.Value == "rcpt" {
			if prop, ok := n.Property.(*ast.StringNode); ok && (prop.Value == "allows_sender" || prop.Value == "blocks_sender") {
				v.rs.rcptLists = true
			}
			return
		}
		if !ok || id.Value != "msg" {
			return
		}
		prop, ok := n.Property.(*ast.StringNode)
		if !ok {
			return
		}
		if p, ok := v.rs.msgFacts[prop.Value]; ok {
			v.r.deps[p] = true
		}
	}
}

func (rs *ruleSet) collect(n ast.Node) refs {
	v := &visitor{rs: rs, r: refs{deps: map[string]bool{}}}
	ast.Walk(&n, v)
	return v.r
}

var noFieldRe = regexp.MustCompile(`^type .* has no field (\w+)$`)

// explain rewrites expr's "type struct {...} has no field x" (which prints the whole
// generated struct) into a message that names the known fields.
func (rs *ruleSet) explain(src, msg string) string {
	m := noFieldRe.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	field := m[1]
	root := ""
	if rm := regexp.MustCompile(`(\w+)\s*\??\.\s*` + regexp.QuoteMeta(field) + `\b`).FindStringSubmatch(src); rm != nil {
		root = rm[1]
	}
	var t reflect.Type
	switch root {
	case "client":
		t = reflect.TypeFor[ClientEnv]()
	case "helo":
		t = reflect.TypeFor[HeloEnv]()
	case "sender":
		t = reflect.TypeFor[SenderEnv]()
	case "rcpt":
		t = reflect.TypeFor[AddressEnv]()
	case "msg":
		t = rs.msgView.t
	default:
		if in, ok := rs.instances[root]; ok {
			t = in.view.t
		}
	}
	if t == nil {
		return "unknown field " + field
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		names = append(names, t.Field(i).Tag.Get("expr"))
	}
	sort.Strings(names)
	return fmt.Sprintf("%s has no field %s (it has: %s)", root, field, strings.Join(names, ", "))
}
