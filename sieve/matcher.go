package sieve

import (
	"regexp"
	"strings"
)

// Tag specs shared by the tests that compare strings (RFC 5228 §2.7).
var (
	comparatorTag = tagSpec{name: "comparator", param: aString, group: "comparator"}
	matchTags     = []tagSpec{
		{name: "is", group: "match type"},
		{name: "contains", group: "match type"},
		{name: "matches", group: "match type"},
		{name: "regex", ext: "regex", group: "match type"},
		{name: "value", ext: "relational", param: aString, group: "match type"},
		{name: "count", ext: "relational", param: aString, group: "match type"},
	}
	addrPartTags = []tagSpec{
		{name: "all", group: "address part"},
		{name: "localpart", group: "address part"},
		{name: "domain", group: "address part"},
		{name: "user", ext: "subaddress", group: "address part"},
		{name: "detail", ext: "subaddress", group: "address part"},
	}
)

func withMatch(extra ...[]tagSpec) []tagSpec {
	out := append([]tagSpec{comparatorTag}, matchTags...)
	for _, e := range extra {
		out = append(out, e...)
	}
	return out
}

// matcher holds a test's match type, comparator and keys.
type matcher struct {
	mt      matchType
	rel     relOp
	cmp     comparator
	keys    []*strExpr
	regexes []*regexp.Regexp // constant :regex keys, compiled once
	capture bool             // set the match variables (RFC 5229 §3.2)
}

// matcher reads the match type and comparator tags of pa and the key list.
func (c *compiler) matcher(n *node, pa *parsedArgs, keys *argument) *matcher {
	m := &matcher{mt: mIs, cmp: cmpCasemap}
	if a, ok := pa.tags["comparator"]; ok {
		name := a.strs[0].s
		cmp, ok := comparatorByName(name)
		if !ok || (cmp == cmpNumeric && !c.has("comparator-i;ascii-numeric")) {
			c.errf(a.pos, "unknown comparator '%s'", name)
			return nil
		}
		m.cmp = cmp
	}
	for _, t := range pa.order {
		switch t {
		case "is":
			m.mt = mIs
		case "contains":
			m.mt = mContains
		case "matches":
			m.mt = mMatches
		case "regex":
			m.mt = mRegex
		case "value", "count":
			m.mt = mValue
			if t == "count" {
				m.mt = mCount
			}
			a := pa.tags[t]
			op, ok := relByName(a.strs[0].s)
			if !ok {
				c.errf(a.pos, "invalid relational match '%s'", a.strs[0].s)
				return nil
			}
			m.rel = op
		}
	}
	if m.cmp == cmpNumeric && (m.mt == mContains || m.mt == mMatches || m.mt == mRegex) {
		c.errf(n.pos, "the i;ascii-numeric comparator does not support substring matching")
		return nil
	}
	m.keys = c.strList(keys)
	if m.mt == mRegex {
		m.regexes = make([]*regexp.Regexp, len(m.keys))
		for i, k := range m.keys {
			if !k.constant() {
				continue
			}
			re, err := compileRegex(k.lit, m.cmp)
			if err != nil {
				c.errf(k.pos, "invalid regular expression '%s': %v", k.lit, err)
				return nil
			}
			m.regexes[i] = re
		}
	}
	m.capture = c.has("variables") && (m.mt == mMatches || m.mt == mRegex)
	return m
}

// matchValues reports whether any of values matches any key; for :count it compares
// the number of values.
func (m *matcher) matchValues(r *runner, values []string) (bool, error) {
	if m.mt == mCount {
		return m.matchCount(r, len(values)), nil
	}
	for _, v := range values {
		ok, err := m.matchOne(r, v)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func (m *matcher) matchCount(r *runner, n int) bool {
	s := itoa(n)
	for _, k := range m.keys {
		if m.rel.holds(m.cmp.compare(s, k.eval(r))) {
			return true
		}
	}
	return false
}

// matchOne matches one value against the keys.
func (m *matcher) matchOne(r *runner, v string) (bool, error) {
	if len(v) > r.s.lim.MaxMatchInput {
		v = v[:r.s.lim.MaxMatchInput]
	}
	for i, kx := range m.keys {
		k := kx.eval(r)
		switch m.mt {
		case mIs:
			if m.cmp.equal(v, k) {
				return true, nil
			}
		case mContains:
			if m.cmp.contains(v, k) {
				return true, nil
			}
		case mValue:
			if m.rel.holds(m.cmp.compare(v, k)) {
				return true, nil
			}
		case mMatches:
			var caps *[]string
			if m.capture {
				caps = &r.caps
			}
			ok := globMatch(k, v, m.cmp == cmpCasemap, caps, &r.matchBudget)
			if r.matchBudget < 0 {
				return false, r.errorf(kx.pos, "a :matches pattern exceeded the matching work limit")
			}
			if ok {
				if m.capture {
					r.setMatch(v, r.caps)
				}
				return true, nil
			}
		case mRegex:
			re := m.regexes[i]
			if re == nil {
				var err error
				if re, err = compileRegex(k, m.cmp); err != nil {
					// A bad pattern from a variable fails this key only (Pigeonhole
					// reports it and goes on).
					r.warnf(kx.pos, "invalid regular expression '%s': %v", k, err)
					continue
				}
			}
			if !m.capture {
				if re.MatchString(v) {
					return true, nil
				}
				continue
			}
			if sm := re.FindStringSubmatch(v); sm != nil {
				r.match = r.match[:0]
				for j := 0; j < len(sm) && j <= maxMatch; j++ {
					r.match = append(r.match, sm[j])
				}
				return true, nil
			}
		}
	}
	return false, nil
}

// setMatch sets ${0} to the whole value and ${1}.. to the wildcards' matches.
func (r *runner) setMatch(whole string, caps []string) {
	r.match = append(r.match[:0], whole)
	for i := 0; i < len(caps) && i < maxMatch; i++ {
		r.match = append(r.match, caps[i])
	}
}

// headerNames compiles a header-name list; constant names are lowercased once.
func (c *compiler) headerNames(a *argument) []*strExpr {
	l := c.strList(a)
	for _, h := range l {
		if h.constant() {
			// An invalid name is no error: no field has it, so it never matches
			// (as in Pigeonhole).
			h.lit = lowerASCII(h.lit)
		}
	}
	return l
}

func trimWS(s string) string { return strings.Trim(s, " \t") }
