package sieve

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// include (RFC 6609): included scripts are compiled with the including one and run in
// their own variable scope; "global" variables are shared.

func init() {
	extensions["include"] = true
	commands["include"] = &cmdSpec{ext: "include", compile: compileInclude}
	commands["return"] = &cmdSpec{ext: "include", compile: compileReturn}
	commands["global"] = &cmdSpec{ext: "include", compile: compileGlobal}
}

type includeState struct {
	count int
	stack []string // keys of the scripts being compiled
	done  map[string]*Script
	// pending holds the scripts being compiled, for include :once cycles.
	pending map[string]*Script
}

func isNotFound(err error) bool { return errors.Is(err, fs.ErrNotExist) }

type includeCmd struct {
	pos    srcPos
	key    string
	script *Script // nil for a missing :optional script
	once   bool
}

func (x *includeCmd) exec(r *runner) error {
	r.currentPos = x.pos
	if x.script == nil {
		return nil
	}
	// :once skips a script already included in this run, by any include.
	if x.once && r.includedOnce[x.key] {
		return nil
	}
	if r.includedOnce == nil {
		r.includedOnce = map[string]bool{}
	}
	r.includedOnce[x.key] = true
	r.includeDepth++
	if r.includeDepth > x.script.lim.MaxIncludeDepth {
		return r.errorf(x.pos, "include nesting exceeds the limit of %d", x.script.lim.MaxIncludeDepth)
	}
	saveS, saveVars, saveMatch := r.s, r.vars, r.match
	r.s, r.vars, r.match = x.script, make([]string, x.script.nvars), nil
	err := r.execBlock(x.script.cmds)
	r.s, r.vars, r.match = saveS, saveVars, saveMatch
	r.includeDepth--
	if err == errReturn {
		return nil
	}
	return err
}

func validScriptName(n string) bool {
	return n != "" && len(n) <= 255 && !strings.ContainsAny(n, "/\x00\r\n") && n != "." && n != ".."
}

func compileInclude(c *compiler, n *node) cmd {
	pa, ok := c.args(n, []tagSpec{
		{name: "personal", group: "location"}, {name: "global", group: "location"},
		{name: "once"}, {name: "optional"},
	})
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString) {
		return nil
	}
	name := pa.pos[0].strs[0].s
	if c.has("variables") && strings.Contains(name, "${") {
		c.errf(pa.pos[0].pos, "include: the script name must be a constant string")
		return nil
	}
	if !validScriptName(name) {
		c.errf(pa.pos[0].pos, "include: invalid script name '%s'", name)
		return nil
	}
	loc := Personal
	if pa.has("global") {
		loc = Global
	}
	key := loc.String() + "/" + name
	x := &includeCmd{pos: n.pos, key: key, once: pa.has("once")}
	st := c.incl
	for _, k := range st.stack {
		if k == key {
			if x.once {
				// A recursive include :once runs at most once: link the script
				// being compiled (RFC 6609 §3.2).
				x.script = st.pending[key]
				return x
			}
			c.errf(n.pos, "include: circular include of script '%s'", name)
			return nil
		}
	}
	if s, ok := st.done[key]; ok {
		x.script = s
		return x
	}
	if c.opt.Include == nil {
		c.errf(n.pos, "include: script '%s' cannot be included here (no include location)", name)
		return nil
	}
	st.count++
	if st.count > c.lim.MaxIncludes {
		c.errf(n.pos, "include: more than %d included scripts", c.lim.MaxIncludes)
		return nil
	}
	if len(st.stack) >= c.lim.MaxIncludeDepth {
		c.errf(n.pos, "include: nesting exceeds the limit of %d", c.lim.MaxIncludeDepth)
		return nil
	}
	src, err := c.opt.Include(loc, name)
	if err != nil {
		if isNotFound(err) && pa.has("optional") {
			return x
		}
		if isNotFound(err) {
			c.errf(n.pos, "include: %s script '%s' does not exist", loc, name)
		} else {
			c.errf(n.pos, "include: failed to read %s script '%s': %v", loc, name, err)
		}
		return nil
	}
	st.stack = append(st.stack, key)
	if st.pending == nil {
		st.pending = map[string]*Script{}
	}
	placeholder := &Script{}
	st.pending[key] = placeholder
	s, err := compileWith(src, c.opt, st)
	st.stack = st.stack[:len(st.stack)-1]
	if err != nil {
		// The included script's errors are reported one by one, then this one.
		var list ErrorList
		var one *CompileError
		switch {
		case errors.As(err, &list):
		case errors.As(err, &one):
			list = ErrorList{one}
		}
		for _, e := range list {
			c.errs = append(c.errs, &CompileError{Line: e.Line, Col: e.Col, Msg: fmt.Sprintf("in %s script '%s': %s", loc, name, e.Msg)})
		}
		c.errf(n.pos, "include: failed to compile %s script '%s'", loc, name)
		return nil
	}
	*placeholder = *s
	s = placeholder
	if st.done == nil {
		st.done = map[string]*Script{}
	}
	st.done[key] = s
	x.script = s
	return x
}

type returnCmd struct{}

func (returnCmd) exec(*runner) error { return errReturn }

func compileReturn(c *compiler, n *node) cmd {
	if len(n.args) > 0 || !c.noTests(n) {
		c.errf(n.pos, "the return command takes no arguments")
		return nil
	}
	return returnCmd{}
}

type nopCmd struct{}

func (nopCmd) exec(*runner) error { return nil }

func compileGlobal(c *compiler, n *node) cmd {
	if !c.has("variables") {
		c.errf(n.pos, "the global command needs the variables extension")
		return nil
	}
	pa, ok := c.args(n, nil)
	if !ok || !c.noTests(n) || !c.positional(n, pa, aStringList) {
		return nil
	}
	for _, s := range pa.pos[0].strs {
		name := strings.ToLower(s.s)
		if !isIdent(name) {
			c.errf(s.pos, "global: invalid variable name '%s'", s.s)
			return nil
		}
		if _, local := c.vars[name]; local && !c.globals[name] {
			c.errf(s.pos, "global: variable '%s' was already used as a local variable", s.s)
			return nil
		}
		c.globals[name] = true
	}
	return nopCmd{}
}
