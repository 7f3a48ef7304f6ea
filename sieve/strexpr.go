package sieve

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// strExpr is a string argument: a constant, or parts to join at run time when the
// script uses variables (RFC 5229 §3).
type strExpr struct {
	lit   string
	parts []strPart // nil for a constant
	pos   srcPos
}

type partKind uint8

const (
	pLit partKind = iota
	pVar
	pMatch
	pGlobal
)

// varNamespaces are the variable namespaces extensions add (RFC 5229 §3), by name.
var varNamespaces = map[string]struct {
	ext     string
	resolve func(c *compiler, name string) strPart
}{}

type strPart struct {
	kind partKind
	lit  string
	idx  int
}

func (e *strExpr) constant() bool { return e.parts == nil }

func (e *strExpr) eval(r *runner) string {
	if e.parts == nil {
		return e.lit
	}
	var b strings.Builder
	for _, p := range e.parts {
		switch p.kind {
		case pLit:
			b.WriteString(p.lit)
		case pVar:
			b.WriteString(r.vars[p.idx])
		case pMatch:
			if p.idx < len(r.match) {
				b.WriteString(r.match[p.idx])
			}
		case pGlobal:
			b.WriteString(r.globals[p.lit])
		}
	}
	return b.String()
}

func (c *compiler) strList(a *argument) []*strExpr {
	out := make([]*strExpr, len(a.strs))
	for i, s := range a.strs {
		out[i] = c.str(s)
	}
	return out
}

func (c *compiler) str(s sval) *strExpr {
	v := s.s
	if c.has("encoded-character") {
		v = c.decodeEncoded(s.pos, v)
	}
	e := &strExpr{lit: v, pos: s.pos}
	if c.has("variables") && strings.Contains(v, "${") {
		e.parts = c.varParts(s.pos, v)
		if len(e.parts) == 1 && e.parts[0].kind == pLit {
			e.lit, e.parts = e.parts[0].lit, nil
		} else if len(e.parts) == 0 {
			e.lit, e.parts = "", nil
		}
	}
	return e
}

func isIdent(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isAlpha(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// varParts splits v into literal text and variable references; a malformed reference
// stays literal text (RFC 5229 §3).
func (c *compiler) varParts(pos srcPos, v string) []strPart {
	var parts []strPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, strPart{kind: pLit, lit: lit.String()})
			lit.Reset()
		}
	}
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			lit.WriteString(v)
			break
		}
		lit.WriteString(v[:i])
		end := strings.IndexByte(v[i+2:], '}')
		if end < 0 {
			lit.WriteString(v[i:])
			break
		}
		ref := v[i+2 : i+2+end]
		if p, ok := c.varRef(pos, ref); ok {
			flush()
			parts = append(parts, p)
			v = v[i+3+end:]
			continue
		}
		// Not a reference: keep "${" and rescan after it (a nested "${" may follow).
		lit.WriteString("${")
		v = v[i+2:]
	}
	flush()
	return parts
}

// varRef resolves the text between "${" and "}".
func (c *compiler) varRef(pos srcPos, ref string) (strPart, bool) {
	if ref != "" && isDigit(ref[0]) {
		for i := 0; i < len(ref); i++ {
			if !isDigit(ref[i]) {
				return strPart{}, false
			}
		}
		n, err := strconv.Atoi(strings.TrimLeft(ref, "0") + "0")
		if err != nil || n/10 > maxMatch {
			c.errf(pos, "match variable ${%s} is out of range (0 to %d)", ref, maxMatch)
			return strPart{kind: pMatch, idx: maxMatch}, true
		}
		return strPart{kind: pMatch, idx: n / 10}, true
	}
	elems := strings.Split(ref, ".")
	for _, e := range elems {
		if !isIdent(e) {
			return strPart{}, false
		}
	}
	name := strings.ToLower(ref)
	if len(elems) > 1 {
		if strings.ToLower(elems[0]) == "global" && c.has("include") && len(elems) == 2 {
			return strPart{kind: pGlobal, lit: strings.ToLower(elems[1])}, true
		}
		if ns, ok := varNamespaces[strings.ToLower(elems[0])]; ok && c.has(ns.ext) {
			return ns.resolve(c, strings.ToLower(strings.Join(elems[1:], "."))), true
		}
		c.errf(pos, "variable namespace '%s' is not supported", elems[0])
		return strPart{kind: pLit, lit: "${" + ref + "}"}, true
	}
	if c.globals[name] {
		return strPart{kind: pGlobal, lit: name}, true
	}
	return strPart{kind: pVar, idx: c.varSlot(pos, name)}, true
}

func (c *compiler) varSlot(pos srcPos, name string) int {
	if i, ok := c.vars[name]; ok {
		return i
	}
	if c.nvars >= c.lim.MaxVariables {
		if !c.tooManyVars {
			c.errf(pos, "too many variables (the limit is %d)", c.lim.MaxVariables)
			c.tooManyVars = true
		}
		return 0
	}
	c.vars[name] = c.nvars
	c.nvars++
	return c.nvars - 1
}

// decodeEncoded replaces "${hex:...}" and "${unicode:...}" (RFC 5228 §2.4.2.4).
func (c *compiler) decodeEncoded(pos srcPos, v string) string {
	if !strings.Contains(v, "${") {
		return v
	}
	var b strings.Builder
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			b.WriteString(v)
			return b.String()
		}
		b.WriteString(v[:i])
		rest := v[i+2:]
		end := strings.IndexByte(rest, '}')
		colon := strings.IndexByte(rest, ':')
		if end < 0 || colon < 0 || colon > end {
			b.WriteString("${")
			v = rest
			continue
		}
		kind := strings.ToLower(rest[:colon])
		body := rest[colon+1 : end]
		out, ok := "", false
		switch kind {
		case "hex":
			out, ok = decodeHex(body)
		case "unicode":
			var bad bool
			out, ok, bad = decodeUnicode(body)
			if bad {
				c.errf(pos, "invalid unicode character in encoded-character ${unicode:%s}", body)
			}
		}
		if !ok {
			b.WriteString("${")
			v = rest
			continue
		}
		b.WriteString(out)
		v = rest[end+1:]
	}
}

func hexFields(body string) ([]string, bool) {
	f := strings.FieldsFunc(body, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	if len(f) == 0 && strings.Trim(body, " \t\r\n") != "" {
		return nil, false
	}
	for _, x := range f {
		for i := 0; i < len(x); i++ {
			if !strings.ContainsRune("0123456789abcdefABCDEF", rune(x[i])) {
				return nil, false
			}
		}
	}
	return f, true
}

func decodeHex(body string) (string, bool) {
	f, ok := hexFields(body)
	if !ok {
		return "", false
	}
	var b []byte
	for _, x := range f {
		if len(x)%2 != 0 {
			return "", false
		}
		for i := 0; i < len(x); i += 2 {
			n, _ := strconv.ParseUint(x[i:i+2], 16, 8)
			b = append(b, byte(n))
		}
	}
	return string(b), true
}

func decodeUnicode(body string) (out string, ok, bad bool) {
	f, ok := hexFields(body)
	if !ok {
		return "", false, false
	}
	var b strings.Builder
	for _, x := range f {
		x = strings.TrimLeft(x, "0")
		if len(x) > 6 {
			return "", true, true
		}
		n, _ := strconv.ParseUint("0"+x, 16, 32)
		if n > 0x10FFFF || (n >= 0xD800 && n <= 0xDFFF) {
			return "", true, true
		}
		b.WriteRune(rune(n))
	}
	return b.String(), true, false
}

// truncateUTF8 cuts s to at most n bytes on a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
