package config

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/policy"
)

// Deps are what policy constructors may need besides their own config.
type Deps struct {
	Resolver     dnsx.Resolver
	DataDir      string
	Hostname     string
	LocalDomains []string
	// AuthservID is the server's Authentication-Results identity (Config.AuthservID).
	AuthservID string
	Logger     *slog.Logger
	// BayesPostgres and BayesRefresh are bayes.postgres and bayes.refresh: the bayes
	// policy's shared token database (empty: its SQLite db).
	BayesPostgres string
	BayesRefresh  time.Duration
	// BayesStores is the process's shared global Bayes stores (nil: the policy opens its
	// own), so that the policy and the Junk and release trainers hold one token table.
	BayesStores *bayes.Stores
}

// RuleFile is a loaded rule file: the configured policy instances and the rules.
type RuleFile struct {
	Path     string
	Policies map[string]policy.Policy
	Rules    []policy.RuleSpec
}

// LoadRules reads and checks a rule file:
//
//	policies:
//	  zen:    { rbl: [zen.spamhaus.org=127.0.0.[2..11]*3] }
//	  spf:    { spf: {} }
//	  clamav: { kind: clamd, addrs: [unix:/run/clamav/clamd.ctl] }
//	rules:
//	  - name: zen
//	    if: zen.listed
//	    reject: 554 5.7.1 "listed"
//
// It returns every error it finds (a policy.ErrorList): bad policy configs, bad rules and
// rule compile errors, each naming the file and line.
func LoadRules(path string, deps Deps) (*RuleFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return ParseRuleFile(data, path, deps)
}

// ParseRuleFile is LoadRules on bytes already read; name is used in errors.
func ParseRuleFile(data []byte, name string, deps Deps) (*RuleFile, error) {
	rf := &RuleFile{Path: name, Policies: map[string]policy.Policy{}}
	var errs policy.ErrorList
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &policy.RuleError{File: name, Msg: err.Error()}
	}
	if len(root.Content) > 0 {
		top := root.Content[0]
		if top.Kind != yaml.MappingNode {
			return nil, &policy.RuleError{File: name, Line: top.Line, Msg: "a rule file is a mapping with policies: and rules:"}
		}
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], top.Content[i+1]
			switch k.Value {
			case "rules":
			case "policies":
				errs = append(errs, buildPolicies(v, name, deps, rf.Policies)...)
			default:
				errs = append(errs, &policy.RuleError{File: name, Line: k.Line, Column: k.Column, Msg: fmt.Sprintf("unknown key %q (a rule file has policies: and rules:)", k.Value)})
			}
		}
	}
	addBuiltins(rf.Policies)
	specs, err := policy.ParseRules(data, name)
	errs = append(errs, policy.Errors(err)...)
	rf.Rules = specs
	if err := policy.Compile(specs, rf.Policies, deps.LocalDomains); err != nil {
		errs = append(errs, policy.Errors(err)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rf, nil
}

// commonKeys are keys every policy instance accepts, handled here rather than by the kind.
// (timeout is each kind's own option: a kind bounds its lookups more gracefully than the
// engine's timeout, which abandons the check.)
var commonKeys = map[string]bool{"kind": true}

func buildPolicies(n *yaml.Node, file string, deps Deps, out map[string]policy.Policy) policy.ErrorList {
	var errs policy.ErrorList
	if n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return policy.ErrorList{&policy.RuleError{File: file, Line: n.Line, Msg: "policies must be a mapping of name: {kind: ..., options}"}}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		fail := func(line, col int, format string, a ...any) {
			errs = append(errs, &policy.RuleError{File: file, Line: line, Column: col, Msg: fmt.Sprintf("policy %q: ", name) + fmt.Sprintf(format, a...)})
		}
		if _, dup := out[name]; dup {
			fail(k.Line, k.Column, "defined twice")
			continue
		}
		if v.Kind != yaml.MappingNode {
			fail(v.Line, v.Column, "must be a mapping such as {rbl: [zen.spamhaus.org]} or {kind: spf}")
			continue
		}
		p, err := buildPolicy(name, v, deps)
		if err != nil {
			fail(v.Line, v.Column, "%v", err)
			continue
		}
		out[name] = p
	}
	return errs
}

// buildPolicy finds the kind of one instance and calls its constructor. The kind is the
// `kind:` key, or else the first key that names a kind; when that key is not an option of
// the kind (spf: {spf: {helo: true}}), its value is the kind's config.
func buildPolicy(name string, v *yaml.Node, deps Deps) (policy.Policy, error) {
	kindName, kindKey := "", -1
	for i := 0; i+1 < len(v.Content); i += 2 {
		if v.Content[i].Value == "kind" {
			kindName = v.Content[i+1].Value
		}
	}
	if kindName == "" {
		for i := 0; i+1 < len(v.Content); i += 2 {
			if _, ok := kinds[v.Content[i].Value]; ok {
				kindName, kindKey = v.Content[i].Value, i
				break
			}
		}
	}
	k, ok := kinds[kindName]
	if !ok {
		if kindName == "" {
			return nil, fmt.Errorf("no kind: give kind: one of %s", kindList())
		}
		return nil, fmt.Errorf("unknown kind %q (known: %s)", kindName, kindList())
	}
	// The node the kind decodes: the instance's options without the common keys.
	opts := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column}
	if kindKey >= 0 && !k.selfNamed {
		inner := v.Content[kindKey+1]
		for i := 0; i+1 < len(v.Content); i += 2 {
			if i != kindKey && !commonKeys[v.Content[i].Value] {
				return nil, fmt.Errorf("unknown key %q beside %s: (put the options inside %s: {...})", v.Content[i].Value, kindName, kindName)
			}
		}
		switch {
		case inner.Kind == yaml.MappingNode:
			opts = inner
		case inner.Tag == "!!null":
		default:
			return nil, fmt.Errorf("%s: takes a mapping of options, such as %s: {}", kindName, kindName)
		}
	} else {
		for i := 0; i+1 < len(v.Content); i += 2 {
			if !commonKeys[v.Content[i].Value] {
				opts.Content = append(opts.Content, v.Content[i], v.Content[i+1])
			}
		}
	}
	p, err := k.build(opts, deps)
	if err != nil {
		return nil, err
	}
	if k.extendsMsg {
		p = policy.ExtendMsg(p)
	}
	return p, nil
}

// decode decodes a policy's options strictly into cfg.
func decode(n *yaml.Node, cfg any) error {
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	return decodeStrict(data, cfg)
}

func kindList() string {
	var names []string
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// addBuiltins adds the instances that need no configuration (content and date, whose
// facts extend msg) unless the file configures instances of those kinds itself.
func addBuiltins(ps map[string]policy.Policy) {
	for _, b := range builtins {
		if _, taken := ps[b.name]; taken {
			continue
		}
		provided := false
		for _, p := range ps {
			if mp, ok := p.(policy.MsgFactProvider); ok && mp.ProvidesMsgFacts() && sameKind(p, b.name) {
				provided = true
			}
		}
		if provided {
			continue
		}
		p, err := kinds[b.kind].build(&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, Deps{})
		if err != nil {
			panic(fmt.Sprintf("config: built-in policy %s: %v", b.name, err)) // defaults must build
		}
		ps[b.name] = policy.ExtendMsg(p)
	}
}

// sameKind reports whether p (unwrapped) is of the built-in's kind.
func sameKind(p policy.Policy, kind string) bool {
	for {
		u, ok := p.(interface{ Unwrap() policy.Policy })
		if !ok {
			break
		}
		p = u.Unwrap()
	}
	k, ok := kinds[kind]
	return ok && k.is != nil && k.is(p)
}
