package sieve

import (
	"strings"
	"time"
)

// duplicate (RFC 7352), spamtest, spamtestplus, virustest (RFC 5235), ihave and error
// (RFC 5463).

func init() {
	for _, e := range []string{"duplicate", "spamtest", "spamtestplus", "virustest", "ihave"} {
		extensions[e] = true
	}
	tests["duplicate"] = &testSpec{ext: "duplicate", compile: compileDuplicate}
	// Pigeonhole's older vnd.dovecot.duplicate: accepted for scripts migrated from
	// Dovecot, not advertised.
	extensions["vnd.dovecot.duplicate"] = false
	tests["spamtest"] = &testSpec{ext: "spamtest", compile: func(c *compiler, n *node) test { return compileScoreTest(c, n, false) }}
	tests["virustest"] = &testSpec{ext: "virustest", compile: func(c *compiler, n *node) test { return compileScoreTest(c, n, true) }}
	tests["ihave"] = &testSpec{ext: "ihave", compile: compileIhave}
	commands["error"] = &cmdSpec{ext: "ihave", compile: compileError}
}

// Duplicate periods: Pigeonhole's sieve_duplicate_default_period (14 days, used when
// the script gives no :seconds) and sieve_duplicate_max_period (7 days, the bound of
// :seconds), as Pigeonhole documents them.
const (
	DuplicateDefaultPeriod = 14 * 24 * time.Hour
	DuplicateMaxPeriod     = 7 * 24 * time.Hour
)

type duplicateTest struct {
	vnd      bool // vnd.dovecot.duplicate: no memory within one run
	handle   *strExpr
	header   *strExpr
	uniqueID *strExpr
	period   time.Duration
	last     bool
}

func (x *duplicateTest) eval(r *runner) (bool, error) {
	var id string
	switch {
	case x.uniqueID != nil:
		id = x.uniqueID.eval(r)
	default:
		name := "message-id"
		if x.header != nil {
			name = x.header.eval(r)
		}
		v := r.header(name)
		if len(v) == 0 {
			return false, nil
		}
		id = v[0]
	}
	handle := ""
	if x.handle != nil {
		handle = x.handle.eval(r)
	}
	key := "duplicate:" + handle + "\x00" + id
	if x.vnd {
		seen := r.host.Seen(r.ctx, key, x.period)
		r.remember = append(r.remember, Memory{Key: key, Period: x.period})
		return seen, nil
	}
	if r.dupSeen[key] {
		return true, nil
	}
	if r.dupSeen == nil {
		r.dupSeen = map[string]bool{}
	}
	r.dupSeen[key] = true
	seen := r.host.Seen(r.ctx, key, x.period)
	if !seen || x.last {
		r.remember = append(r.remember, Memory{Key: key, Period: x.period, Refresh: x.last})
	}
	return seen, nil
}

func compileDuplicate(c *compiler, n *node) test {
	if c.has("vnd.dovecot.duplicate") {
		return compileVndDuplicate(c, n)
	}
	pa, ok := c.args(n, []tagSpec{
		{name: "handle", param: aString},
		{name: "header", param: aString, group: "id"}, {name: "uniqueid", param: aString, group: "id"},
		{name: "seconds", param: aNumber}, {name: "last"},
	})
	if !ok || !all(c.positional(n, pa), c.noSubtests(n)) {
		return nil
	}
	x := &duplicateTest{period: DuplicateDefaultPeriod, last: pa.has("last")}
	if a, ok := pa.tags["handle"]; ok {
		x.handle = c.str(a.strs[0])
	}
	if a, ok := pa.tags["header"]; ok {
		x.header = c.str(a.strs[0])
		if x.header.constant() && !validFieldName(x.header.lit) {
			c.errf(a.pos, "duplicate: invalid header name '%s'", x.header.lit)
			return nil
		}
	}
	if a, ok := pa.tags["uniqueid"]; ok {
		x.uniqueID = c.str(a.strs[0])
	}
	if a, ok := pa.tags["seconds"]; ok {
		x.period = min(time.Duration(min(a.num, 1<<32))*time.Second, DuplicateMaxPeriod)
	}
	return x
}

type scoreTest struct {
	virus   bool
	percent bool
	m       *matcher
}

// value is the test's string (RFC 5235 §3): "0" when not tested, else 1..10 (spamtest),
// 0..100 (:percent) or 1..5 (virustest).
func (x *scoreTest) value(r *runner) string {
	if x.virus {
		lvl, ok := r.host.VirusScore(r.ctx)
		if !ok {
			return "0"
		}
		return itoa(min(max(lvl, 1), 5))
	}
	p, ok := r.host.SpamScore(r.ctx)
	if !ok {
		return "0"
	}
	// As Pigeonhole computes it from the score ratio (truncating).
	ratio := min(max(p, 0), 100) / 100
	if x.percent {
		return itoa(int(ratio*100 + 0.001))
	}
	return itoa(int(ratio*9 + 1.001))
}

func (x *scoreTest) eval(r *runner) (bool, error) {
	return x.m.matchValues(r, []string{x.value(r)})
}

func compileScoreTest(c *compiler, n *node, virus bool) test {
	specs := withMatch()
	if !virus {
		specs = append(specs, tagSpec{name: "percent", ext: "spamtestplus"})
	}
	pa, ok := c.args(n, specs)
	if !ok || !all(c.positional(n, pa, aString), c.noSubtests(n)) {
		return nil
	}
	x := &scoreTest{virus: virus, percent: pa.has("percent")}
	if x.m = c.matcher(n, pa, pa.pos[0]); x.m == nil {
		return nil
	}
	if !pa.has("comparator") {
		// RFC 5235 §3.1: the default comparator is i;ascii-numeric.
		x.m.cmp = cmpNumeric
		if x.m.mt == mContains || x.m.mt == mMatches || x.m.mt == mRegex {
			x.m.cmp = cmpCasemap
		}
	}
	return x
}

// ---- ihave ------------------------------------------------------------------------

type ihaveTest bool

func (t ihaveTest) eval(*runner) (bool, error) { return bool(t), nil }

func (c *compiler) ihaveCaps(n *node) ([]string, bool) {
	if len(n.args) != 1 || !n.args[0].isStrings() || len(n.tests) > 0 {
		c.errf(n.pos, "the ihave test expects one string list")
		return nil, false
	}
	var caps []string
	for _, s := range n.args[0].strs {
		if c.has("variables") && strings.Contains(s.s, "${") {
			c.errf(s.pos, "ihave: the capability list must be constant")
			return nil, false
		}
		caps = append(caps, strings.ToLower(s.s))
	}
	return caps, true
}

func compileIhave(c *compiler, n *node) test {
	caps, ok := c.ihaveCaps(n)
	if !ok {
		return nil
	}
	for _, e := range caps {
		// encoded-character and variables change how the script is read, so they
		// cannot be enabled by ihave (Pigeonhole: incompatible with ihave).
		if !c.extAllowed(e) || e == "encoded-character" || e == "variables" {
			return ihaveTest(false)
		}
	}
	return ihaveTest(true)
}

type errorCmd struct {
	pos srcPos
	msg *strExpr
}

func (x *errorCmd) exec(r *runner) error { return r.errorf(x.pos, "%s", x.msg.eval(r)) }

func compileError(c *compiler, n *node) cmd {
	pa, ok := c.args(n, nil)
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString) {
		return nil
	}
	return &errorCmd{pos: n.pos, msg: c.str(pa.pos[0].strs[0])}
}

// compileVndDuplicate reads vnd.dovecot.duplicate's form: duplicate [:handle string]
// [:header string / :value string].
func compileVndDuplicate(c *compiler, n *node) test {
	pa, ok := c.args(n, []tagSpec{
		{name: "handle", param: aString},
		{name: "header", param: aString, group: "id"}, {name: "value", param: aString, group: "id"},
	})
	if !ok || !all(c.positional(n, pa), c.noSubtests(n)) {
		return nil
	}
	x := &duplicateTest{vnd: true, period: DuplicateDefaultPeriod}
	if a, ok := pa.tags["handle"]; ok {
		x.handle = c.str(a.strs[0])
	}
	if a, ok := pa.tags["header"]; ok {
		x.header = c.str(a.strs[0])
	}
	if a, ok := pa.tags["value"]; ok {
		x.uniqueID = c.str(a.strs[0])
	}
	return x
}
