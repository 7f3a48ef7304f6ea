package sieve

import (
	"fmt"
	"slices"
	"strings"
)

// Script is a compiled script, safe for concurrent runs.
type Script struct {
	cmds     []cmd
	warnings []*CompileError
	opt      Options
	lim      Limits
	nvars    int
	exts     map[string]bool
}

// Warnings returns what the compiler noticed but accepted (e.g. a deprecated form).
func (s *Script) Warnings() []*CompileError { return s.warnings }

// Requires reports the capabilities the script requires, sorted.
func (s *Script) Requires() []string {
	var out []string
	for e := range s.exts {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

type cmd interface {
	exec(r *runner) error
}

type test interface {
	eval(r *runner) (bool, error)
}

type cmdSpec struct {
	ext     string // the capability that enables it; "" for the base language
	compile func(c *compiler, n *node) cmd
}

type testSpec struct {
	ext     string
	compile func(c *compiler, n *node) test
}

// The command and test tables; extension files (and the test suite's test-only
// extension) register themselves in init functions.
var (
	commands   = map[string]*cmdSpec{}
	tests      = map[string]*testSpec{}
	extensions = map[string]bool{}
)

// Supported lists the capabilities this package implements, sorted.
func Supported() []string {
	var out []string
	for e, public := range extensions {
		if public {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

type compiler struct {
	opt     Options
	lim     Limits
	allowed map[string]bool
	req     map[string]bool
	errs    ErrorList
	warns   []*CompileError
	vars    map[string]int
	nvars   int
	globals map[string]bool
	seenCmd bool
	// tooManyVars: the variable limit was reported (once, not for each later one).
	tooManyVars bool
	incl        *includeState
	script      *Script
	// inLoop and similar context flags for commands that need them.
	ctx map[string]int
}

func (c *compiler) errf(p srcPos, format string, args ...any) {
	c.errs = append(c.errs, &CompileError{Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)})
}

func (c *compiler) warnf(p srcPos, format string, args ...any) {
	c.warns = append(c.warns, &CompileError{Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)})
}

// has reports whether the script required ext.
func (c *compiler) has(ext string) bool { return c.req[ext] }

// Compile parses and checks a script. Errors are *CompileError or an ErrorList.
func Compile(src []byte, opt Options) (*Script, error) {
	return compileWith(src, opt, &includeState{})
}

func compileWith(src []byte, opt Options, incl *includeState) (*Script, error) {
	lim := opt.Limits.withDefaults()
	if len(src) > lim.MaxScriptSize {
		return nil, &CompileError{Line: 1, Col: 1, Msg: fmt.Sprintf("script is %d bytes, over the limit of %d", len(src), lim.MaxScriptSize)}
	}
	nodes, perrs := parse(src, lim.MaxNesting, lim.MaxScriptSize)
	if len(perrs) == 1 {
		return nil, perrs[0]
	}
	if len(perrs) > 1 {
		return nil, perrs
	}
	c := &compiler{
		opt: opt, lim: lim, req: map[string]bool{}, vars: map[string]int{},
		globals: map[string]bool{}, incl: incl, ctx: map[string]int{},
	}
	if opt.Extensions != nil {
		c.allowed = map[string]bool{}
		for _, e := range opt.Extensions {
			c.allowed[strings.ToLower(e)] = true
		}
	}
	c.script = &Script{opt: opt, lim: lim}
	cmds := c.block(nodes, true)
	if len(c.errs) > 0 {
		if len(c.errs) == 1 {
			return nil, c.errs[0]
		}
		return nil, c.errs
	}
	c.script.cmds = cmds
	c.script.warnings = c.warns
	c.script.nvars = c.nvars
	c.script.exts = c.req
	return c.script, nil
}

// block compiles a command sequence; if/elsif/else chains are joined here.
func (c *compiler) block(nodes []*node, top bool) []cmd {
	var out []cmd
	var chain *ifCmd
	orphan := false // an elsif/else without if was reported; its followers are not
	for _, n := range nodes {
		if n.name == "require" {
			if !top || c.seenCmd {
				c.errf(n.pos, "require command can only be placed at top level at the beginning of the file")
				continue
			}
			c.require(n)
			continue
		}
		c.seenCmd = true
		switch n.name {
		case "if":
			orphan = false
			chain = c.ifChain(n, nil)
			if chain != nil {
				out = append(out, chain)
			}
			continue
		case "elsif", "else":
			if chain == nil {
				if !orphan {
					c.errf(n.pos, "%s command must follow an if or elsif command", n.name)
				}
				orphan = n.name == "elsif"
				continue
			}
			chain = c.ifChain(n, chain)
			if n.name == "else" {
				chain = nil
			}
			continue
		}
		chain, orphan = nil, false
		spec := commands[n.name]
		if spec == nil || (spec.ext != "" && !c.has(spec.ext)) {
			if _, isTest := tests[n.name]; spec == nil && isTest {
				c.errf(n.pos, "attempted to use test '%s' as command", n.name)
				continue
			}
			if spec != nil {
				c.errf(n.pos, "unknown command '%s' (the %s extension is not required)", n.name, spec.ext)
			} else {
				c.errf(n.pos, "unknown command '%s'", n.name)
			}
			continue
		}
		if x := spec.compile(c, n); x != nil {
			out = append(out, x)
		}
	}
	return out
}

func (c *compiler) extAllowed(e string) bool {
	if c.allowed != nil && !c.allowed[e] && !strings.HasPrefix(e, "vnd.dovecot.") {
		return false
	}
	_, ok := extensions[e]
	return ok
}

func (c *compiler) require(n *node) {
	if len(n.args) != 1 || !n.args[0].isStrings() || len(n.tests) > 0 || n.hasBlock {
		c.errf(n.pos, "require command expects one string list argument")
		return
	}
	for _, s := range n.args[0].strs {
		e := strings.ToLower(s.s)
		if !c.extAllowed(e) {
			c.errf(s.pos, "require: unknown Sieve capability '%s'", s.s)
			continue
		}
		if (e == "duplicate" && c.req["vnd.dovecot.duplicate"]) || (e == "vnd.dovecot.duplicate" && c.req["duplicate"]) {
			c.errf(s.pos, "require: the duplicate and vnd.dovecot.duplicate extensions conflict")
			continue
		}
		c.req[e] = true
		// Implied capabilities (RFC 5231 relational needs no comparator; spamtestplus
		// implies spamtest, RFC 5235 §3.2; envelope-deliverby etc. not supported).
		switch e {
		case "spamtestplus":
			c.req["spamtest"] = true
		case "imapflags":
			c.req["imap4flags"] = true
		case "vacation-seconds":
			c.req["vacation"] = true // RFC 6131 §2
		}
	}
}

// ---- arguments -------------------------------------------------------------------

// tagSpec describes a tagged argument a command or test accepts.
type tagSpec struct {
	name  string
	ext   string  // capability needed, "" for none
	param argKind // aTag for none, else the kind of the argument after it
	group string  // tags of one group exclude one another
}

// parsedArgs are a node's tagged arguments (by tag name) and positional ones.
type parsedArgs struct {
	tags  map[string]*argument // the tag's parameter, or the tag itself when it has none
	order []string
	pos   []*argument
}

func (p *parsedArgs) has(t string) bool { _, ok := p.tags[t]; return ok }

// args splits n's arguments by specs; ok is false after an error was reported.
func (c *compiler) args(n *node, specs []tagSpec) (*parsedArgs, bool) {
	pa := &parsedArgs{tags: map[string]*argument{}}
	groups := map[string]string{}
	for i := 0; i < len(n.args); i++ {
		a := n.args[i]
		if a.kind != aTag {
			pa.pos = append(pa.pos, a)
			continue
		}
		var spec *tagSpec
		for j := range specs {
			if specs[j].name == a.tag && (specs[j].ext == "" || c.has(specs[j].ext)) {
				spec = &specs[j]
				break
			}
		}
		if spec == nil {
			c.errf(a.pos, "unknown tagged argument ':%s' for the %s %s (not one of its tags)", a.tag, n.name, kindOf(n))
			return nil, false
		}
		if len(pa.pos) > 0 {
			c.errf(a.pos, "unexpected tagged argument ':%s' after the positional arguments of the %s %s", a.tag, n.name, kindOf(n))
			return nil, false
		}
		if _, dup := pa.tags[a.tag]; dup {
			c.errf(a.pos, "tagged argument ':%s' given twice", a.tag)
			return nil, false
		}
		if spec.group != "" {
			if prev, ok := groups[spec.group]; ok {
				c.errf(a.pos, "tagged argument ':%s' conflicts with ':%s' (both a %s)", a.tag, prev, spec.group)
				return nil, false
			}
			groups[spec.group] = a.tag
		}
		val := a
		if spec.param != aTag {
			if i+1 >= len(n.args) || !kindFits(n.args[i+1], spec.param) {
				c.errf(a.pos, "tagged argument ':%s' of %s expects a %s", a.tag, n.name, kindName(spec.param))
				return nil, false
			}
			i++
			val = n.args[i]
		}
		pa.tags[a.tag] = val
		pa.order = append(pa.order, a.tag)
	}
	return pa, true
}

func kindOf(n *node) string {
	if _, ok := tests[n.name]; ok {
		return "test"
	}
	return "command"
}

func kindFits(a *argument, k argKind) bool {
	switch k {
	case aString:
		return a.kind == aString
	case aStringList:
		return a.isStrings()
	}
	return a.kind == k
}

func kindName(k argKind) string {
	switch k {
	case aNumber:
		return "number"
	case aString:
		return "string"
	case aStringList:
		return "string list"
	}
	return "tag"
}

// argNames name the positional arguments in error messages (as Pigeonhole does).
var argNames = map[string][]string{
	"header": {"header names", "key list"}, "address": {"header list", "key list"},
	"envelope": {"envelope part", "key list"}, "exists": {"header names"}, "size": {"limit"},
	"string": {"source", "key list"}, "fileinto": {"folder"}, "redirect": {"address"},
	"reject": {"reason"}, "ereject": {"reason"}, "vacation": {"reason"}, "require": {"capabilities"},
	"set": {"name", "value"}, "date": {"header name", "date part", "key list"},
	"currentdate": {"date part", "key list"}, "body": {"key list"}, "include": {"script name"},
	"addheader": {"field name", "value"}, "environment": {"name", "key list"},
	"mailboxexists": {"mailbox names"}, "hasflag": {"key list"},
}

// positional checks the count and kinds of n's positional arguments.
func (c *compiler) positional(n *node, pa *parsedArgs, kinds ...argKind) bool {
	if len(pa.pos) != len(kinds) {
		c.errf(n.pos, "the %s %s requires %d positional argument(s), but %d were specified", n.name, kindOf(n), len(kinds), len(pa.pos))
		return false
	}
	for i, k := range kinds {
		if !kindFits(pa.pos[i], k) {
			name := ""
			if names := argNames[n.name]; i < len(names) {
				name = " (" + names[i] + ")"
			}
			c.errf(pa.pos[i].pos, "the %s %s expects a %s as argument %d%s, but a %s was found", n.name, kindOf(n), kindName(k), i+1, name, pa.pos[i].describe())
			return false
		}
	}
	return true
}

// all reports whether every check passed; unlike &&, it runs them all, so each
// problem of a command is reported (as Pigeonhole does).
func all(oks ...bool) bool {
	for _, ok := range oks {
		if !ok {
			return false
		}
	}
	return true
}

func (c *compiler) noTests(n *node) bool {
	if len(n.tests) > 0 {
		t := n.tests[0]
		if _, isTest := tests[t.name]; !isTest && !n.testList {
			// "fileinto "x" \n keep;": the next command was read as a test.
			c.errf(n.pos, "missing semicolon after the %s command (before '%s' at line %d)", n.name, t.name, t.pos.Line)
		} else {
			c.errf(n.pos, "the %s command accepts no tests, but tests are specified", n.name)
		}
		return false
	}
	if n.hasBlock {
		c.errf(n.pos, "the %s command takes no block", n.name)
		return false
	}
	return true
}

// ---- tests ----------------------------------------------------------------------

func (c *compiler) test(n *node) test {
	spec := tests[n.name]
	if spec == nil || (spec.ext != "" && !c.has(spec.ext) && !(n.name == "duplicate" && c.has("vnd.dovecot.duplicate"))) {
		if spec != nil {
			c.errf(n.pos, "unknown test '%s' (the %s extension is not required)", n.name, spec.ext)
		} else {
			c.errf(n.pos, "unknown test '%s'", n.name)
		}
		return nil
	}
	return spec.compile(c, n)
}

func (c *compiler) noSubtests(n *node) bool {
	if len(n.tests) > 0 {
		switch t := n.tests[0]; t.name {
		case "is", "contains", "matches", "regex", "value", "count", "all", "localpart", "domain",
			"user", "detail", "comparator", "over", "under":
			// "address matches ...": a tag written without its colon.
			c.errf(t.pos, "missing colon before the '%s' tag of the %s test", t.name, n.name)
			return false
		}
		c.errf(n.pos, "the %s test accepts no sub-tests, but tests are specified", n.name)
		return false
	}
	return true
}
