package sieve

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// variables (RFC 5229) and imap4flags (RFC 5232).

func init() {
	extensions["variables"] = true
	extensions["imap4flags"] = true
	commands["set"] = &cmdSpec{ext: "variables", compile: compileSet}
	tests["string"] = &testSpec{ext: "variables", compile: compileString}
	for _, name := range []string{"setflag", "addflag", "removeflag"} {
		commands[name] = &cmdSpec{ext: "imap4flags", compile: compileFlagCmd}
	}
	tests["hasflag"] = &testSpec{ext: "imap4flags", compile: compileHasflag}
}

// maxVariableName bounds a variable name (Pigeonhole's 64).
const maxVariableName = 64

// varTarget is where set and the flag commands store: a local slot or a global name.
type varTarget struct {
	global bool
	idx    int
	name   string
}

func (r *runner) getVar(t varTarget) string {
	if t.global {
		return r.globals[t.name]
	}
	return r.vars[t.idx]
}

func (r *runner) setVar(t varTarget, v string) {
	v = truncateUTF8(v, r.s.lim.MaxVariableSize)
	if t.global {
		if r.globals == nil {
			r.globals = map[string]string{}
		}
		r.globals[t.name] = v
		return
	}
	r.vars[t.idx] = v
}

// target resolves a variable name given as a string argument (must be constant).
func (c *compiler) target(s sval) (varTarget, bool) {
	name := strings.ToLower(s.s)
	if g, ok := strings.CutPrefix(name, "global."); ok && c.has("include") {
		if !isIdent(g) {
			c.errf(s.pos, "invalid variable name '%s'", s.s)
			return varTarget{}, false
		}
		return varTarget{global: true, name: g}, true
	}
	if !isIdent(name) {
		c.errf(s.pos, "invalid variable name '%s'", s.s)
		return varTarget{}, false
	}
	if len(name) > maxVariableName {
		c.errf(s.pos, "variable name '%s...' is longer than %d characters", s.s[:maxVariableName], maxVariableName)
		return varTarget{}, false
	}
	if c.globals[name] {
		return varTarget{global: true, name: name}, true
	}
	return varTarget{idx: c.varSlot(s.pos, name)}, true
}

type modifier struct {
	name string
	prec int
}

var modifiers = map[string]modifier{
	"lower": {"lower", 40}, "upper": {"upper", 40},
	"lowerfirst": {"lowerfirst", 30}, "upperfirst": {"upperfirst", 30},
	"quotewildcard": {"quotewildcard", 20}, "quoteregex": {"quoteregex", 20},
	"encodeurl": {"encodeurl", 15}, "length": {"length", 10},
}

type setCmd struct {
	t     varTarget
	value *strExpr
	mods  []string // in the order they apply
}

func (x *setCmd) exec(r *runner) error {
	v := x.value.eval(r)
	for _, m := range x.mods {
		v = applyModifier(m, v, r.s.lim.MaxVariableSize)
	}
	r.setVar(x.t, v)
	return nil
}

// applyModifier applies one set modifier (RFC 5229 §4.1); limit is the variable size
// limit, which a quoting modifier never cuts in the middle of an escape.
func applyModifier(m, v string, limit int) string {
	switch m {
	case "lower":
		return strings.ToLower(v)
	case "upper":
		return strings.ToUpper(v)
	case "lowerfirst", "upperfirst":
		if v == "" {
			return v
		}
		ch, w := utf8.DecodeRuneInString(v)
		if m == "lowerfirst" {
			ch = unicode.ToLower(ch)
		} else {
			ch = unicode.ToUpper(ch)
		}
		return string(ch) + v[w:]
	case "quotewildcard", "quoteregex":
		special := `*?\`
		if m == "quoteregex" {
			special = `\^$.[]|()*+?{}`
		}
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			n := 1
			if strings.IndexByte(special, v[i]) >= 0 {
				n = 2
			}
			if b.Len()+n > limit {
				break
			}
			if n == 2 {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		return b.String()
	case "encodeurl":
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			c := v[i]
			if isAlpha(c) && c != '_' || isDigit(c) || strings.IndexByte("-._~", c) >= 0 {
				b.WriteByte(c)
			} else {
				b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
			}
		}
		return b.String()
	case "length":
		return itoa(utf8.RuneCountInString(v))
	}
	return v
}

func compileSet(c *compiler, n *node) cmd {
	specs := []tagSpec{{name: "lower"}, {name: "upper"}, {name: "lowerfirst"}, {name: "upperfirst"},
		{name: "quotewildcard"}, {name: "length"}, {name: "quoteregex", ext: "regex"}, {name: "encodeurl", ext: "enotify"}}
	pa, ok := c.args(n, specs)
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString, aString) {
		return nil
	}
	x := &setCmd{}
	byPrec := map[int]string{}
	for _, t := range pa.order {
		m := modifiers[t]
		if prev, dup := byPrec[m.prec]; dup {
			c.errf(n.pos, "modifiers :%s and :%s of set have the same precedence", prev, t)
			return nil
		}
		byPrec[m.prec] = t
	}
	for _, p := range []int{40, 30, 20, 15, 10} {
		if m, ok := byPrec[p]; ok {
			x.mods = append(x.mods, m)
		}
	}
	name := pa.pos[0].strs[0]
	if x.t, ok = c.target(name); !ok {
		return nil
	}
	x.value = c.str(pa.pos[1].strs[0])
	return x
}

type stringTest struct {
	src []*strExpr
	m   *matcher
}

func (x *stringTest) eval(r *runner) (bool, error) {
	if x.m.mt == mCount {
		n := 0
		for _, s := range x.src {
			if s.eval(r) != "" {
				n++
			}
		}
		return x.m.matchCount(r, n), nil
	}
	for _, s := range x.src {
		if ok, err := x.m.matchOne(r, s.eval(r)); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func compileString(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch())
	if !ok || !all(c.positional(n, pa, aStringList, aStringList), c.noSubtests(n)) {
		return nil
	}
	m := c.matcher(n, pa, pa.pos[1])
	if m == nil {
		return nil
	}
	if !pa.has("comparator") {
		// Pigeonhole's string test compares with i;octet unless told otherwise.
		m.cmp = cmpOctet
	}
	return &stringTest{src: c.strList(pa.pos[0]), m: m}
}

// ---- imap4flags -------------------------------------------------------------------

func hasFlag(l []string, f string) bool {
	for _, x := range l {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// splitFlags splits flag strings at spaces and drops duplicates (RFC 5232 §3).
func splitFlags(dst []string, s string) []string {
	for _, f := range strings.Fields(s) {
		if !hasFlag(dst, f) {
			dst = append(dst, f)
		}
	}
	return dst
}

type flagCmd struct {
	op     string
	target *varTarget // nil for the internal variable
	flags  []*strExpr
}

func (x *flagCmd) exec(r *runner) error {
	var cur []string
	if x.target == nil {
		cur = r.flags
	} else {
		cur = splitFlags(nil, r.getVar(*x.target))
	}
	var arg []string
	for _, f := range x.flags {
		arg = splitFlags(arg, f.eval(r))
	}
	switch x.op {
	case "setflag":
		cur = arg
	case "addflag":
		cur = append([]string(nil), cur...)
		for _, f := range arg {
			if !hasFlag(cur, f) {
				cur = append(cur, f)
			}
		}
	case "removeflag":
		var out []string
		for _, f := range cur {
			if !hasFlag(arg, f) {
				out = append(out, f)
			}
		}
		cur = out
	}
	if x.target == nil {
		r.flags = cur
	} else {
		r.setVar(*x.target, strings.Join(cur, " "))
	}
	return nil
}

func compileFlagCmd(c *compiler, n *node) cmd {
	pa, ok := c.args(n, nil)
	if !ok || !c.noTests(n) {
		return nil
	}
	x := &flagCmd{op: n.name}
	switch len(pa.pos) {
	case 1:
		if !c.positional(n, pa, aStringList) {
			return nil
		}
		x.flags = c.strList(pa.pos[0])
	case 2:
		if !c.has("variables") {
			c.errf(n.pos, "the %s command takes a variable name only with the variables extension", n.name)
			return nil
		}
		if !c.positional(n, pa, aString, aStringList) {
			return nil
		}
		t, ok := c.target(pa.pos[0].strs[0])
		if !ok {
			return nil
		}
		x.target = &t
		x.flags = c.strList(pa.pos[1])
	default:
		c.errf(n.pos, "the %s command expects a flag list, optionally after a variable name", n.name)
		return nil
	}
	return x
}

type hasflagTest struct {
	targets []varTarget // empty for the internal variable
	m       *matcher
}

func (x *hasflagTest) eval(r *runner) (bool, error) {
	var flags []string
	if len(x.targets) == 0 {
		flags = r.flags
	} else {
		for _, t := range x.targets {
			flags = splitFlags(flags, r.getVar(t))
		}
	}
	return x.m.matchValues(r, flags)
}

func compileHasflag(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch())
	if !ok || !c.noSubtests(n) {
		return nil
	}
	x := &hasflagTest{}
	var keys *argument
	switch len(pa.pos) {
	case 1:
		if !c.positional(n, pa, aStringList) {
			return nil
		}
		keys = pa.pos[0]
	case 2:
		if !c.has("variables") {
			c.errf(n.pos, "the hasflag test takes variable names only with the variables extension")
			return nil
		}
		if !c.positional(n, pa, aStringList, aStringList) {
			return nil
		}
		for _, s := range pa.pos[0].strs {
			t, ok := c.target(s)
			if !ok {
				return nil
			}
			x.targets = append(x.targets, t)
		}
		keys = pa.pos[1]
	default:
		c.errf(n.pos, "the hasflag test expects a key list, optionally after variable names")
		return nil
	}
	if x.m = c.matcher(n, pa, keys); x.m == nil {
		return nil
	}
	if x.m.mt != mCount && x.m.mt != mRegex {
		// A key names flags like a flag list: "b A" is the flags b and A (RFC 5232
		// §4 example).
		var split []*strExpr
		for _, k := range x.m.keys {
			if !k.constant() || len(strings.Fields(k.lit)) < 2 {
				split = append(split, k)
				continue
			}
			for _, f := range strings.Fields(k.lit) {
				split = append(split, &strExpr{lit: f, pos: k.pos})
			}
		}
		x.m.keys = split
	}
	return x
}

// actionFlags are the flags of a keep or fileinto: its :flags, else the internal
// variable (RFC 5232 §5).
func (r *runner) actionFlags(l []*strExpr) []string {
	if l == nil {
		// Only a script that required imap4flags can set the internal variable; in a
		// sequence (RunSequence) it carries over to later scripts.
		return cloneFlags(r.flags)
	}
	var out []string
	for _, f := range l {
		out = splitFlags(out, f.eval(r))
	}
	return out
}
