package bayes

import (
	"bytes"
	"math/bits"
)

// Tokens of the consistency of a message's sender fields (TokenizerConfig.Align,
// AlignURL) and of its Received path (RcvdPath). A real company's mail names its own
// domain in From, Return-Path, Message-ID, Reply-To, the Received host names and the
// body's links; spam of the corpus's era forged some of them.

// regDomain returns the last two labels of the domain of the address in v (the last
// '@' of a From or Return-Path value, up to the first byte that cannot be in a host
// name), lower-cased into buf; nil if none.
func regDomain(buf []byte, v []byte) []byte {
	at := bytes.LastIndexByte(v, '@')
	if at < 0 {
		return nil
	}
	d := v[at+1:]
	e := 0
	for e < len(d) && isHostByte(d[e]) {
		e++
	}
	return regSuffix(buf, d[:e])
}

// regSuffix returns the last two labels of host, lower-cased into buf; nil if host has
// no dot.
func regSuffix(buf []byte, host []byte) []byte {
	host = bytes.TrimRight(host, ".")
	dots := 0
	s := 0
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == '.' {
			dots++
			if dots == 2 {
				s = i + 1
				break
			}
		}
	}
	if dots == 0 || s >= len(host) || host[s] == '.' {
		return nil
	}
	return lowerInto(buf[:0], host[s:])
}

func isHostByte(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '-' || c == '.'
}

// alignWord is "yes", "no" or "none" (v absent).
func alignWord(v []byte, dom []byte) []byte {
	switch {
	case len(trimSpace(v)) == 0 || bytes.Equal(trimSpace(v), []byte("<>")):
		return []byte("none")
	case indexFold(v, string(dom)) >= 0:
		return []byte("yes")
	}
	return []byte("no")
}

// align adds the "align:" tokens of the top-level header fields.
func (t *Tokenizer) align(st *tokState, fields []field) {
	var fb [64]byte
	from := headerValue(fields, "from")
	dom := regDomain(fb[:0], from)
	if len(dom) > 60 {
		dom = nil
	}
	st.fromDom = append(st.fromDom[:0], dom...)
	st.combo = st.combo[:0]
	if len(dom) == 0 {
		if t.cfg.Align {
			st.add("align:", "from:", []byte("none"))
		}
		return
	}
	rp := alignWord(headerValue(fields, "return-path"), dom)
	mid := alignWord(headerValue(fields, "message-id"), dom)
	rt := alignWord(headerValue(fields, "reply-to"), dom)
	st.combo = append(st.combo[:0], rp[0], mid[0], rt[0])
	if !t.cfg.Align {
		return
	}
	st.add("align:", "rp:", rp)
	st.add("align:", "mid:", mid)
	st.add("align:", "rt:", rt)
	st.add("align:", "sender:", alignWord(headerValue(fields, "sender"), dom))
	// the Received fields: any of them, and the oldest (the last)
	var last []byte
	anyRcvd := false
	for _, f := range fields {
		if len(f.name) == 8 && bytes.EqualFold(f.name, []byte("received")) {
			last = f.value
			if !anyRcvd && indexFold(f.value, string(dom)) >= 0 {
				anyRcvd = true
			}
		}
	}
	if last == nil {
		st.add("align:", "rcvd:", []byte("none"))
	} else {
		st.add("align:", "rcvd:", yesNo(anyRcvd))
		st.add("align:", "rcvd-last:", alignWord(last, dom))
	}
	// the Message-ID's domain in the Received fields
	if mid := headerValue(fields, "message-id"); mid != nil {
		var mb [64]byte
		if md := regDomain(mb[:0], mid); len(md) > 0 {
			found := false
			for _, f := range fields {
				if len(f.name) == 8 && bytes.EqualFold(f.name, []byte("received")) && indexFold(f.value, string(md)) >= 0 {
					found = true
					break
				}
			}
			st.add("align:", "mid-rcvd:", yesNo(found))
		}
	}
	// To: how many addresses, and whether it is From's
	to := headerValue(fields, "to")
	n := bytes.Count(to, []byte("@"))
	var tw []byte
	switch {
	case n == 0:
		tw = []byte("0")
	case n == 1:
		tw = []byte("1")
		if bytes.Contains(bytes.ToLower(to), bytes.ToLower(addrSpec(from))) {
			tw = []byte("from")
		}
	case n < 5:
		tw = []byte("2")
	default:
		tw = []byte("5")
	}
	st.add("align:", "to:", tw)
}

// addrSpec returns the address of a From value: within <>, or the word with '@'.
func addrSpec(v []byte) []byte {
	if i := bytes.IndexByte(v, '<'); i >= 0 {
		if j := bytes.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	at := bytes.IndexByte(v, '@')
	if at < 0 {
		return []byte{0}
	}
	s, e := at, at
	for s > 0 && !isSpace(v[s-1]) && v[s-1] != '"' {
		s--
	}
	for e < len(v) && !isSpace(v[e]) {
		e++
	}
	return v[s:e]
}

// noteURLHost records the registrable domain of a URL host (AlignURL).
func (st *tokState) noteURLHost(host []byte) {
	if st.nurlDoms >= len(st.urlDoms) {
		return
	}
	var b [64]byte
	if d := regSuffix(b[:0], host); len(d) > 0 {
		st.urlDoms[st.nurlDoms] = hashWord(d)
		st.nurlDoms++
	}
}

// alignURL adds "align:url:" (all, some, no or none of the body's links go to From's
// domain).
func (st *tokState) alignURL() {
	if len(st.fromDom) == 0 {
		return
	}
	if st.nurlDoms == 0 {
		st.add("align:", "url:", []byte("none"))
		return
	}
	h := hashWord(st.fromDom)
	k := 0
	for _, d := range st.urlDoms[:st.nurlDoms] {
		if d == h {
			k++
		}
	}
	w := "some"
	switch k {
	case 0:
		w = "no"
	case st.nurlDoms:
		w = "all"
	}
	if !st.urlDomOnly {
		st.add("align:", "url:", []byte(w))
	}
	if k > 0 {
		st.add("fromurl:", "", st.fromDom)
	}
}

// alignCombo adds one token of the relations together: Return-Path, Message-ID,
// Reply-To and the body's links ("align:c:yny-s").
func (st *tokState) alignCombo() {
	if len(st.combo) == 0 {
		return
	}
	u := byte('0')
	if len(st.fromDom) > 0 && st.nurlDoms > 0 {
		h := hashWord(st.fromDom)
		k := 0
		for _, d := range st.urlDoms[:st.nurlDoms] {
			if d == h {
				k++
			}
		}
		switch k {
		case 0:
			u = 'n'
		case st.nurlDoms:
			u = 'a'
		default:
			u = 's'
		}
	}
	b := append(st.combo, '-', u)
	st.add("align:", "c:", b)
}

// rcvdPath adds "rpath:" tokens for the Received path: the number of hops (in powers
// of two), and per hop the relation of the HELO name to the reverse DNS name
// ("from helo (rdns [ip])"): match, mismatch, nordns (unknown or no name), ip (a
// literal HELO); the oldest hop's also as "rpath:o:"; private networks; host names
// that look dynamic (dsl, dial-up, cable, pools, digits in their first label).
func (t *Tokenizer) rcvdPath(st *tokState, fields []field) {
	hops := 0
	var seen [8]bool
	var old byte
	private, dyn := false, false
	for _, f := range fields {
		if len(f.name) != 8 || !bytes.EqualFold(f.name, []byte("received")) {
			continue
		}
		hops++
		v := trimSpace(f.value)
		if bytes.Contains(v, []byte("[10.")) || bytes.Contains(v, []byte("[192.168.")) || bytes.Contains(v, []byte("(10.")) || bytes.Contains(v, []byte("(192.168.")) {
			private = true
		}
		if !dyn && looksDynamic(v) {
			dyn = true
		}
		if !hasPrefixFold(v, "from ") {
			continue
		}
		v = trimSpace(v[5:])
		e := 0
		for e < len(v) && !isSpace(v[e]) && v[e] != '(' {
			e++
		}
		helo := v[:e]
		rest := trimSpace(v[e:])
		var k byte // index into helo states
		switch {
		case len(rest) == 0 || rest[0] != '(':
			k = 0 // no rdns part
		default:
			in := rest[1:]
			e := 0
			for e < len(in) && !isSpace(in[e]) && in[e] != ')' {
				e++
			}
			r := in[:e]
			switch {
			case len(helo) > 0 && helo[0] == '[' || isIPv4(helo):
				k = 1 // ip
			case len(r) == 0 || r[0] == '[' || bytes.EqualFold(r, []byte("unknown")) || bytes.EqualFold(r, []byte("helo")):
				k = 2 // nordns
			case bytes.EqualFold(r, helo):
				k = 3 // match
			default:
				k = 4 // mismatch
			}
		}
		seen[k] = true
		old = k
	}
	names := [...]string{"plain", "ip", "nordns", "match", "mismatch"}
	if t.cfg.RcvdPathCombo {
		var cb [16]byte
		c := append(cb[:0], '0'+byte(min(bits.Len(uint(hops)), 9)), names[old][0], names[old][1])
		for k := range names {
			c = append(c, map[bool]byte{true: '1', false: '0'}[seen[k]])
		}
		c = append(c, map[bool]byte{true: 'p', false: '-'}[private], map[bool]byte{true: 'd', false: '-'}[dyn])
		st.add("rpath:", "c:", c)
		if !t.cfg.RcvdPath {
			return
		}
	}
	for k, s := range seen[:len(names)] {
		if s {
			st.add("rpath:", "", []byte(names[k]))
		}
	}
	if hops > 0 {
		st.add("rpath:", "o:", []byte(names[old]))
	}
	var d [1]byte
	d[0] = '0' + byte(min(bits.Len(uint(hops)), 9))
	st.add("rpath:", "hops:", d[:])
	if private {
		st.add("rpath:", "private", nil)
	}
	if dyn {
		st.add("rpath:", "dyn", nil)
	}
}

// looksDynamic spots host names of dial-up, DSL and cable pools in a Received field.
func looksDynamic(v []byte) bool {
	for _, s := range []string{"dsl", "dial", "ppp", "cable", "pool", "dyn", "dhcp", "modem"} {
		if indexFold(v, s) >= 0 {
			return true
		}
	}
	return false
}

func yesNo(b bool) []byte {
	if b {
		return []byte("yes")
	}
	return []byte("no")
}

// relay adds "relay:" tokens of the first Received hop from a public address (the
// newest one: the hops below it can be forged): "relay:same" and "auth:<domain>"
// when its reverse DNS name is in From's domain, "relay:other", "relay:unknown" (no
// reverse DNS name), "relay:none" (no such hop).
func (t *Tokenizer) relay(st *tokState, fields []field) {
	var fb [64]byte
	dom := regDomain(fb[:0], headerValue(fields, "from"))
	for _, f := range fields {
		if len(f.name) != 8 || !bytes.EqualFold(f.name, []byte("received")) {
			continue
		}
		v := trimSpace(f.value)
		if !hasPrefixFold(v, "from ") {
			continue
		}
		// the address in brackets and the name before it, within the first parentheses
		o := bytes.IndexByte(v, '(')
		if o < 0 {
			continue
		}
		c := bytes.IndexByte(v[o:], ')')
		if c < 0 {
			continue
		}
		in := v[o+1 : o+c]
		lb := bytes.IndexByte(in, '[')
		rb := bytes.IndexByte(in, ']')
		if lb < 0 || rb < lb {
			continue
		}
		ip := in[lb+1 : rb]
		if !isIPv4(ip) || bytes.HasPrefix(ip, []byte("127.")) || bytes.HasPrefix(ip, []byte("10.")) || bytes.HasPrefix(ip, []byte("192.168.")) {
			continue
		}
		name := trimSpace(in[:lb])
		var rb2 [64]byte
		rd := regSuffix(rb2[:0], name)
		switch {
		case len(rd) == 0 || bytes.EqualFold(name, []byte("unknown")):
			st.add("relay:", "", []byte("unknown"))
		case len(dom) > 0 && bytes.Equal(rd, dom):
			st.add("relay:", "", []byte("same"))
			st.add("auth:", "", dom)
		default:
			st.add("relay:", "", []byte("other"))
			if t.cfg.RelayDomain {
				st.add("relay:", "@", rd)
			}
		}
		return
	}
	st.add("relay:", "", []byte("none"))
}

// htmlShape adds "html:" tokens of an HTML part's structure (HTMLShape): a <base>,
// forms, tables, comments, white or tiny or hidden text, relative links, and the
// share of text in the markup in powers of two.
func (st *tokState) htmlShape(src []byte, textLen int) {
	for _, m := range [...]struct{ needle, tok string }{
		{"<base", "base"}, {"<form", "form"}, {"<table", "table"}, {"<!--", "comment"},
		{"display:none", "hidden"}, {"visibility:hidden", "hidden"},
		{"color=\"#ffffff\"", "white"}, {"color=#ffffff", "white"}, {"color=\"white\"", "white"}, {"color=white", "white"},
		{"size=\"1\"", "tiny"}, {"size=1", "tiny"}, {"size=\"-", "small"}, {"size=-", "small"},
		{"<style", "style"}, {"class=", "class"}, {"<img", "img"}, {"<map", "map"},
	} {
		if indexFold(src, m.needle) >= 0 {
			st.add("html:", "", []byte(m.tok))
		}
	}
	// relative links: href= not followed by a scheme, '#' or mailto
	rel := false
	for i := 0; !rel; {
		k := indexFold(src[i:], "href=")
		if k < 0 {
			break
		}
		i += k + 5
		v := src[i:]
		if len(v) > 0 && (v[0] == '"' || v[0] == '\'') {
			v = v[1:]
		}
		if len(v) > 0 && v[0] != '#' && !hasPrefixFold(v, "mailto:") && !hasPrefixFold(v, "http") && !hasPrefixFold(v, "javascript") {
			rel = true
		}
	}
	if rel {
		st.add("html:", "", []byte("rel"))
	}
	var d [1]byte
	r := 0
	if textLen > 0 {
		r = bits.Len(uint(len(src) / textLen))
	}
	d[0] = '0' + byte(min(r, 9))
	st.add("html:", "markup:", d[:])
}
