package sieve

import (
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
)

func init() {
	for _, e := range []string{"comparator-i;octet", "comparator-i;ascii-casemap", "comparator-i;ascii-numeric", "encoded-character"} {
		extensions[e] = true
	}
	commands["stop"] = &cmdSpec{compile: compileStop}
	commands["keep"] = &cmdSpec{compile: compileKeep}
	commands["discard"] = &cmdSpec{compile: compileDiscard}
	commands["redirect"] = &cmdSpec{compile: compileRedirect}
	tests["true"] = &testSpec{compile: func(c *compiler, n *node) test { return c.constTest(n, true) }}
	tests["false"] = &testSpec{compile: func(c *compiler, n *node) test { return c.constTest(n, false) }}
	tests["not"] = &testSpec{compile: compileNot}
	tests["allof"] = &testSpec{compile: func(c *compiler, n *node) test { return compileOf(c, n, true) }}
	tests["anyof"] = &testSpec{compile: func(c *compiler, n *node) test { return compileOf(c, n, false) }}
	tests["exists"] = &testSpec{compile: compileExists}
	tests["size"] = &testSpec{compile: compileSize}
	tests["header"] = &testSpec{compile: compileHeader}
	tests["address"] = &testSpec{compile: compileAddress}
}

// ---- control ------------------------------------------------------------------

type ifCmd struct {
	conds  []test // nil entry for else
	blocks [][]cmd
}

func (x *ifCmd) exec(r *runner) error {
	for i, t := range x.conds {
		ok := true
		if t != nil {
			var err error
			if ok, err = t.eval(r); err != nil {
				return err
			}
		}
		if ok {
			return r.execBlock(x.blocks[i])
		}
	}
	return nil
}

func (c *compiler) ifChain(n *node, chain *ifCmd) *ifCmd {
	if len(n.args) > 0 {
		c.errf(n.pos, "the %s command takes no arguments", n.name)
	}
	if !n.hasBlock {
		c.errf(n.pos, "the %s command needs a block", n.name)
	}
	var t test
	if n.name == "else" {
		if len(n.tests) > 0 {
			c.errf(n.pos, "the else command takes no test")
		}
	} else {
		if len(n.tests) != 1 || n.testList {
			c.errf(n.pos, "the %s command needs exactly one test", n.name)
		} else {
			t = c.test(n.tests[0])
		}
	}
	var block []cmd
	if len(n.tests) == 1 && n.tests[0].name == "ihave" && c.has("ihave") {
		// RFC 5463 §4: the block of a true ihave may use the extensions it names;
		// the block of a false one is not compiled at all.
		if t == ihaveTest(true) {
			caps, _ := c.ihaveCaps(n.tests[0])
			var added []string
			for _, e := range caps {
				if !c.req[e] {
					c.req[e] = true
					added = append(added, e)
				}
			}
			block = c.block(n.block, false)
			for _, e := range added {
				delete(c.req, e)
			}
		}
	} else {
		block = c.block(n.block, false)
	}
	if chain == nil {
		chain = &ifCmd{}
	}
	chain.conds = append(chain.conds, t)
	chain.blocks = append(chain.blocks, block)
	return chain
}

type stopCmd struct{}

func (stopCmd) exec(*runner) error { return errStop }

func compileStop(c *compiler, n *node) cmd {
	ok := c.noTests(n)
	if len(n.args) > 0 {
		c.errf(n.pos, "the stop command takes no arguments")
		ok = false
	}
	if !ok {
		return nil
	}
	return stopCmd{}
}

// ---- actions --------------------------------------------------------------------

type keepCmd struct {
	pos   srcPos
	flags []*strExpr // :flags (imap4flags), nil for the internal variable
}

func (x *keepCmd) exec(r *runner) error {
	r.currentPos = x.pos
	flags := r.actionFlags(x.flags)
	r.explicitKeep = true
	return r.store(x.pos, "INBOX", flags, nil)
}

func compileKeep(c *compiler, n *node) cmd {
	pa, ok := c.args(n, []tagSpec{{name: "flags", ext: "imap4flags", param: aStringList}})
	if !ok || !c.noTests(n) || !c.positional(n, pa) {
		return nil
	}
	x := &keepCmd{pos: n.pos}
	if a, ok := pa.tags["flags"]; ok {
		x.flags = c.strList(a)
	}
	return x
}

type discardCmd struct{ pos srcPos }

func (x discardCmd) exec(r *runner) error {
	r.cancelled = true
	r.explicitKeep = false
	for _, a := range r.acts {
		if _, ok := a.(Discard); ok {
			return nil
		}
	}
	r.acts = append(r.acts, Discard{})
	return nil
}

func compileDiscard(c *compiler, n *node) cmd {
	pa, ok := c.args(n, nil)
	if !ok || !c.noTests(n) || !c.positional(n, pa) {
		return nil
	}
	return discardCmd{n.pos}
}

type redirectCmd struct {
	pos  srcPos
	addr *strExpr
	copy bool
}

func (x *redirectCmd) exec(r *runner) error {
	r.currentPos = x.pos
	a := x.addr.eval(r)
	norm, ok := normalizeRedirect(a)
	if !ok {
		return r.errorf(x.pos, "specified redirect address '%s' is invalid", a)
	}
	return r.redirect(x.pos, norm, x.copy)
}

// normalizeRedirect checks a redirect address (an RFC 5322 addr-spec, maybe with a
// display name) and returns it bare.
func normalizeRedirect(a string) (string, bool) {
	l, ok := parseAddressList(a)
	if !ok || len(l) != 1 || !l[0].hasDomain || l[0].local == "" || l[0].domain == "" {
		return "", false
	}
	d := l[0].domain
	if strings.ContainsAny(d, " \t\"<>()[],;:") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return "", false
	}
	return quoteLocal(l[0].local) + "@" + d, true
}

func compileRedirect(c *compiler, n *node) cmd {
	pa, ok := c.args(n, []tagSpec{{name: "copy", ext: "copy"}})
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString) {
		return nil
	}
	x := &redirectCmd{pos: n.pos, addr: c.str(pa.pos[0].strs[0]), copy: pa.has("copy")}
	if x.addr.constant() {
		if _, ok := normalizeRedirect(x.addr.lit); !ok {
			c.errf(pa.pos[0].pos, "specified redirect address '%s' is invalid", x.addr.lit)
			return nil
		}
	}
	return x
}

// ---- tests ----------------------------------------------------------------------

type constTest bool

func (t constTest) eval(*runner) (bool, error) { return bool(t), nil }

func (c *compiler) constTest(n *node, v bool) test {
	if len(n.args) > 0 || !c.noSubtests(n) {
		c.errf(n.pos, "the %s test takes no arguments", n.name)
		return nil
	}
	return constTest(v)
}

type notTest struct{ t test }

func (x notTest) eval(r *runner) (bool, error) {
	ok, err := x.t.eval(r)
	return !ok, err
}

func compileNot(c *compiler, n *node) test {
	if len(n.args) > 0 || len(n.tests) != 1 || n.testList {
		c.errf(n.pos, "the not test takes exactly one test")
		return nil
	}
	t := c.test(n.tests[0])
	if t == nil {
		return nil
	}
	return notTest{t}
}

type ofTest struct {
	all   bool
	tests []test
}

func (x *ofTest) eval(r *runner) (bool, error) {
	for _, t := range x.tests {
		ok, err := t.eval(r)
		if err != nil {
			return false, err
		}
		if ok != x.all {
			return ok, nil
		}
	}
	return x.all, nil
}

func compileOf(c *compiler, n *node, all bool) test {
	if len(n.args) > 0 || !n.testList {
		c.errf(n.pos, "the %s test takes a test list", n.name)
		return nil
	}
	x := &ofTest{all: all}
	for _, tn := range n.tests {
		t := c.test(tn)
		x.tests = append(x.tests, t)
	}
	for _, t := range x.tests {
		if t == nil {
			return nil
		}
	}
	return x
}

type existsTest struct{ names []*strExpr }

func (x *existsTest) eval(r *runner) (bool, error) {
	for _, h := range x.names {
		if len(r.header(h.eval(r))) == 0 {
			return false, nil
		}
	}
	return true, nil
}

func compileExists(c *compiler, n *node) test {
	pa, ok := c.args(n, nil)
	if !ok || !all(c.positional(n, pa, aStringList), c.noSubtests(n)) {
		return nil
	}
	return &existsTest{names: c.headerNames(pa.pos[0])}
}

type sizeTest struct {
	over  bool
	limit int64
}

func (x sizeTest) eval(r *runner) (bool, error) {
	size := r.msg.Size()
	if r.hdr != nil && r.hdr.changed {
		size += int64(len(r.hdr.bytes()) - r.hdr.origLen)
	}
	if x.over {
		return size > x.limit, nil
	}
	return size < x.limit, nil
}

func compileSize(c *compiler, n *node) test {
	pa, ok := c.args(n, []tagSpec{{name: "over", group: "size"}, {name: "under", group: "size"}})
	if !ok || !all(c.positional(n, pa, aNumber), c.noSubtests(n)) {
		return nil
	}
	if !pa.has("over") && !pa.has("under") {
		c.errf(n.pos, "the size test needs :over or :under")
		return nil
	}
	return sizeTest{over: pa.has("over"), limit: pa.pos[0].num}
}

type headerTest struct {
	names []*strExpr
	m     *matcher
	idx   fieldIndex
}

func (x *headerTest) eval(r *runner) (bool, error) {
	if x.m.mt == mCount {
		n := 0
		for _, h := range x.names {
			n += len(x.idx.pick(r.header(h.eval(r))))
		}
		return x.m.matchCount(r, n), nil
	}
	for _, h := range x.names {
		for _, v := range x.idx.pick(r.header(h.eval(r))) {
			ok, err := x.m.matchOne(r, decodeHeader(v))
			if ok || err != nil {
				return ok, err
			}
		}
	}
	return false, nil
}

func compileHeader(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch(indexTags))
	if !ok || !all(c.positional(n, pa, aStringList, aStringList), c.noSubtests(n)) {
		return nil
	}
	m := c.matcher(n, pa, pa.pos[1])
	if m == nil {
		return nil
	}
	return &headerTest{names: c.headerNames(pa.pos[0]), m: m, idx: c.fieldIndex(n, pa)}
}

type addressTest struct {
	idx   fieldIndex
	names []*strExpr
	part  addrPart
	m     *matcher
}

func (c *compiler) addrPart(pa *parsedArgs) addrPart {
	for _, t := range pa.order {
		switch t {
		case "localpart":
			return partLocal
		case "domain":
			return partDomain
		case "user":
			return partUser
		case "detail":
			return partDetail
		}
	}
	return partAll
}

// delimiter is the recipient delimiter set for subaddress (RFC 5233 §3).
func (s *Script) delimiter() string {
	if s.opt.Delimiter == "" {
		return "+"
	}
	return s.opt.Delimiter
}

func (x *addressTest) eval(r *runner) (bool, error) {
	var vals []string
	for _, h := range x.names {
		for _, v := range x.idx.pick(r.header(h.eval(r))) {
			addrs, _ := parseAddressList(v)
			if len(addrs) == 0 && x.part == partAll {
				// An empty field is the empty address for :all.
				addrs = []mailAddr{{invalid: true, raw: trimWS(v)}}
			}
			for _, a := range addrs {
				p, has := a.part(x.part, r.s.delimiter())
				if !has {
					continue
				}
				if x.m.mt == mCount {
					vals = append(vals, p)
					continue
				}
				if ok, err := x.m.matchOne(r, p); ok || err != nil {
					return ok, err
				}
			}
		}
	}
	if x.m.mt == mCount {
		return x.m.matchCount(r, len(vals)), nil
	}
	return false, nil
}

func compileAddress(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch(addrPartTags, indexTags))
	if !ok || !all(c.positional(n, pa, aStringList, aStringList), c.noSubtests(n)) {
		return nil
	}
	m := c.matcher(n, pa, pa.pos[1])
	if m == nil {
		return nil
	}
	names := c.headerNames(pa.pos[0])
	for _, h := range names {
		if h.constant() && !isAddressHeader(h.lit) {
			c.errf(h.pos, "specified header '%s' is not allowed for the address test", h.lit)
			return nil
		}
	}
	return &addressTest{idx: c.fieldIndex(n, pa), names: names, part: c.addrPart(pa), m: m}
}

// isAddressHeader lists the fields that hold addresses (RFC 5322 §3.6 and
// Pigeonhole's list), the only ones the address test accepts.
func isAddressHeader(h string) bool {
	switch h {
	case "from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender",
		"resent-to", "resent-cc", "resent-bcc", "resent-reply-to", "return-path", "delivered-to",
		"errors-to", "disposition-notification-to", "x-original-to", "envelope-to", "x-delivered-to",
		"original-recipient", "apparently-to", "x-envelope-to", "mail-followup-to", "mail-reply-to":
		return true
	}
	return false
}

// header returns the values of a field, from the edited header when editheader ran.
func (r *runner) header(name string) []string {
	if r.hdr != nil {
		return r.hdr.values(name)
	}
	return r.msg.Header(name)
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeader decodes RFC 2047 encoded words, as Pigeonhole does before matching.
func decodeHeader(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// indexTags select one occurrence of a field (index, RFC 5260 §6).
var indexTags = []tagSpec{{name: "index", ext: "index", param: aNumber}, {name: "last", ext: "index"}}

// fieldIndex is a compiled :index n [:last]; zero selects every field.
type fieldIndex struct {
	n    int
	last bool
}

func (c *compiler) fieldIndex(n *node, pa *parsedArgs) fieldIndex {
	var fi fieldIndex
	if a, ok := pa.tags["index"]; ok {
		if a.num < 1 {
			c.errf(a.pos, "the :index of %s must be 1 or more", n.name)
		}
		fi.n = int(min(a.num, 1<<30))
		fi.last = pa.has("last")
	} else if pa.has("last") {
		c.errf(n.pos, "the :last tag of %s needs :index", n.name)
	}
	return fi
}

func (fi fieldIndex) pick(v []string) []string {
	if fi.n == 0 {
		return v
	}
	if fi.n > len(v) {
		return nil
	}
	if fi.last {
		i := len(v) - fi.n
		return v[i : i+1]
	}
	return v[fi.n-1 : fi.n]
}
