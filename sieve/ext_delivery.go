package sieve

import (
	"strings"
	"unicode/utf8"
)

// fileinto (RFC 5228 §4.1), copy (RFC 3894), mailbox (RFC 5490), special-use (RFC 8579),
// reject and ereject (RFC 5429), envelope (RFC 5228 §5.4), environment (RFC 5183).

func init() {
	for _, e := range []string{"fileinto", "copy", "mailbox", "special-use", "reject", "ereject",
		"envelope", "environment", "relational", "subaddress", "regex"} {
		extensions[e] = true
	}
	commands["fileinto"] = &cmdSpec{ext: "fileinto", compile: compileFileinto}
	commands["reject"] = &cmdSpec{ext: "reject", compile: func(c *compiler, n *node) cmd { return compileReject(c, n, false) }}
	commands["ereject"] = &cmdSpec{ext: "ereject", compile: func(c *compiler, n *node) cmd { return compileReject(c, n, true) }}
	tests["envelope"] = &testSpec{ext: "envelope", compile: compileEnvelope}
	tests["mailboxexists"] = &testSpec{ext: "mailbox", compile: compileMailboxExists}
	tests["specialuse_exists"] = &testSpec{ext: "special-use", compile: compileSpecialUseExists}
	tests["environment"] = &testSpec{ext: "environment", compile: compileEnvironment}
}

type fileintoCmd struct {
	pos        srcPos
	mailbox    *strExpr
	flags      []*strExpr
	hasFlags   bool
	create     bool
	copy       bool
	specialUse *strExpr
}

func validMailbox(m string) bool {
	return m != "" && utf8.ValidString(m) && !strings.ContainsAny(m, "\x00\r\n")
}

func (x *fileintoCmd) exec(r *runner) error {
	r.currentPos = x.pos
	mb := x.mailbox.eval(r)
	if !validMailbox(mb) {
		return r.errorf(x.pos, "invalid folder name '%s' specified", mb)
	}
	fi := &FileInto{Mailbox: mb, Create: x.create, Copy: x.copy}
	if x.specialUse != nil {
		fi.SpecialUse = x.specialUse.eval(r)
	}
	var flags []string
	if x.hasFlags {
		flags = r.actionFlags(x.flags)
	} else {
		flags = r.actionFlags(nil)
	}
	if err := r.store(x.pos, mb, flags, fi); err != nil {
		return err
	}
	if !x.copy {
		r.cancelled = true
	}
	return nil
}

func compileFileinto(c *compiler, n *node) cmd {
	pa, ok := c.args(n, []tagSpec{
		{name: "copy", ext: "copy"},
		{name: "flags", ext: "imap4flags", param: aStringList},
		{name: "create", ext: "mailbox"},
		{name: "specialuse", ext: "special-use", param: aString},
	})
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString) {
		return nil
	}
	x := &fileintoCmd{pos: n.pos, mailbox: c.str(pa.pos[0].strs[0]), copy: pa.has("copy"), create: pa.has("create")}
	if x.mailbox.constant() && !validMailbox(x.mailbox.lit) {
		c.errf(pa.pos[0].pos, "invalid folder name '%s' specified", x.mailbox.lit)
		return nil
	}
	if a, ok := pa.tags["flags"]; ok {
		x.flags, x.hasFlags = c.strList(a), true
	}
	if a, ok := pa.tags["specialuse"]; ok {
		x.specialUse = c.str(a.strs[0])
		if x.specialUse.constant() && !validSpecialUse(x.specialUse.lit) {
			c.errf(a.pos, "invalid special-use flag '%s'", x.specialUse.lit)
			return nil
		}
	}
	return x
}

// validSpecialUse checks a special-use flag: "\" atom (RFC 6154 §2).
func validSpecialUse(s string) bool {
	if len(s) < 2 || s[0] != '\\' {
		return false
	}
	return isAtom(s[1:])
}

func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 127 || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

type rejectCmd struct {
	pos      srcPos
	reason   *strExpr
	extended bool
}

func (x *rejectCmd) exec(r *runner) error {
	r.currentPos = x.pos
	if r.hadReject {
		return r.errorf(x.pos, "duplicate reject/ereject action not allowed")
	}
	if r.hadVacation {
		return r.errorf(x.pos, "reject action conflicts with vacation")
	}
	for _, a := range r.acts {
		switch v := a.(type) {
		case Keep, Redirect:
			return r.errorf(x.pos, "reject action conflicts with an earlier %s action", actionName(v))
		case FileInto:
			return r.errorf(x.pos, "reject action conflicts with an earlier fileinto action")
		}
	}
	if err := r.countAction(x.pos); err != nil {
		return err
	}
	r.hadReject = true
	r.cancelled = true
	r.explicitKeep = false
	r.acts = append(r.acts, Reject{Reason: x.reason.eval(r), Extended: x.extended})
	return nil
}

func actionName(a Action) string {
	switch a.(type) {
	case Keep:
		return "keep"
	case FileInto:
		return "fileinto"
	case Redirect:
		return "redirect"
	case Reject:
		return "reject"
	case Discard:
		return "discard"
	case Vacation:
		return "vacation"
	}
	return "unknown"
}

func compileReject(c *compiler, n *node, extended bool) cmd {
	pa, ok := c.args(n, nil)
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString) {
		return nil
	}
	return &rejectCmd{pos: n.pos, reason: c.str(pa.pos[0].strs[0]), extended: extended}
}

// ---- envelope -----------------------------------------------------------------

type envelopeTest struct {
	parts []*strExpr
	part  addrPart
	m     *matcher
}

func envelopeAddr(env *Envelope, part string) (string, bool) {
	switch strings.ToLower(part) {
	case "from":
		return env.From, true
	case "to":
		return env.To, true
	case "orig_to":
		return env.OrigTo, true
	case "auth":
		return env.Auth, env.Auth != ""
	}
	return "", false
}

func (x *envelopeTest) eval(r *runner) (bool, error) {
	var vals []string
	for _, p := range x.parts {
		a, ok := envelopeAddr(r.env, p.eval(r))
		if !ok {
			continue
		}
		var v string
		if a == "" {
			// The null reverse path: only :all sees it, as "" (RFC 5228 §5.4).
			if x.part != partAll {
				continue
			}
		} else {
			ma := splitAddr(a)
			var has bool
			if v, has = ma.part(x.part, r.s.delimiter()); !has {
				continue
			}
		}
		if x.m.mt == mCount {
			vals = append(vals, v)
			continue
		}
		if ok, err := x.m.matchOne(r, v); ok || err != nil {
			return ok, err
		}
	}
	if x.m.mt == mCount {
		return x.m.matchCount(r, len(vals)), nil
	}
	return false, nil
}

func compileEnvelope(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch(addrPartTags))
	if !ok || !all(c.positional(n, pa, aStringList, aStringList), c.noSubtests(n)) {
		return nil
	}
	m := c.matcher(n, pa, pa.pos[1])
	if m == nil {
		return nil
	}
	parts := c.strList(pa.pos[0])
	for _, p := range parts {
		if p.constant() {
			switch strings.ToLower(p.lit) {
			case "from", "to", "auth", "orig_to":
			default:
				c.errf(p.pos, "unknown envelope part '%s'", p.lit)
				return nil
			}
		}
	}
	return &envelopeTest{parts: parts, part: c.addrPart(pa), m: m}
}

// ---- mailbox, special-use --------------------------------------------------------

type mailboxExistsTest struct{ names []*strExpr }

func (x *mailboxExistsTest) eval(r *runner) (bool, error) {
	for _, n := range x.names {
		if !r.host.MailboxExists(r.ctx, n.eval(r)) {
			return false, nil
		}
	}
	return true, nil
}

func compileMailboxExists(c *compiler, n *node) test {
	pa, ok := c.args(n, nil)
	if !ok || !all(c.positional(n, pa, aStringList), c.noSubtests(n)) {
		return nil
	}
	return &mailboxExistsTest{names: c.strList(pa.pos[0])}
}

// SpecialUseHost is what a Host implements to answer specialuse_exists (RFC 8579 §3);
// a Host without it has no special-use mailbox.
type SpecialUseHost interface {
	// SpecialUseExists reports whether mailbox ("" for any) has the special-use flag.
	SpecialUseExists(mailbox, flag string) bool
}

type specialUseExistsTest struct {
	mailbox *strExpr
	flags   []*strExpr
}

func (x *specialUseExistsTest) eval(r *runner) (bool, error) {
	h, ok := r.host.(SpecialUseHost)
	if !ok {
		return false, nil
	}
	mb := ""
	if x.mailbox != nil {
		mb = x.mailbox.eval(r)
		if !r.host.MailboxExists(r.ctx, mb) {
			return false, nil
		}
	}
	for _, f := range x.flags {
		if !h.SpecialUseExists(mb, f.eval(r)) {
			return false, nil
		}
	}
	return true, nil
}

func compileSpecialUseExists(c *compiler, n *node) test {
	pa, ok := c.args(n, nil)
	if !ok || !c.noSubtests(n) {
		return nil
	}
	x := &specialUseExistsTest{}
	switch len(pa.pos) {
	case 1:
		if !c.positional(n, pa, aStringList) {
			return nil
		}
		x.flags = c.strList(pa.pos[0])
	case 2:
		if !c.positional(n, pa, aString, aStringList) {
			return nil
		}
		x.mailbox = c.str(pa.pos[0].strs[0])
		x.flags = c.strList(pa.pos[1])
	default:
		c.errf(n.pos, "the specialuse_exists test expects one or two arguments")
		return nil
	}
	for _, f := range x.flags {
		if f.constant() && !validSpecialUse(f.lit) {
			c.errf(f.pos, "invalid special-use flag '%s'", f.lit)
			return nil
		}
	}
	return x
}

// ---- environment ------------------------------------------------------------------

type environmentTest struct {
	name *strExpr
	m    *matcher
}

// environmentItem returns an item of RFC 5183 §4; the Envelope's Env map overrides.
func (r *runner) environmentItem(name string) (string, bool) {
	name = strings.ToLower(name)
	if v, ok := r.env.Env[name]; ok {
		return v, true
	}
	switch name {
	case "name":
		return "portcullis", true
	case "phase":
		return "during", true
	case "location":
		return "MDA", true
	}
	return "", false
}

func (x *environmentTest) eval(r *runner) (bool, error) {
	v, ok := r.environmentItem(x.name.eval(r))
	if !ok {
		return false, nil // an unknown item fails the test (RFC 5183 §4)
	}
	return x.m.matchValues(r, []string{v})
}

func compileEnvironment(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch())
	if !ok || !all(c.positional(n, pa, aString, aStringList), c.noSubtests(n)) {
		return nil
	}
	m := c.matcher(n, pa, pa.pos[1])
	if m == nil {
		return nil
	}
	return &environmentTest{name: c.str(pa.pos[0].strs[0]), m: m}
}
