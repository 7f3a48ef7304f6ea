package sieve

import "strings"

// mailAddr is one address of a header or the envelope, split for address parts.
type mailAddr struct {
	local, domain string
	hasDomain     bool
	// invalid marks an element that is no address: it has no :localpart or
	// :domain, and :all sees raw, its text (RFC 5228 §2.7.4).
	invalid bool
	raw     string
}

func (a mailAddr) all() string {
	if !a.hasDomain {
		return a.local
	}
	return quoteLocal(a.local) + "@" + a.domain
}

// quoteLocal writes a local part as RFC 5322 wants it: as is when it is a dot-atom,
// quoted otherwise ("S[r]us"), so :all compares normalized addresses.
func quoteLocal(l string) string {
	if isDotAtom(l) {
		return l
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			continue // UTF-8 (RFC 6532)
		}
		if !(isAlpha(c) || isDigit(c) || c == '.' || strings.IndexByte("!#$%&'*+-/=?^`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

type addrPart uint8

const (
	partAll addrPart = iota
	partLocal
	partDomain
	partUser
	partDetail
)

// part returns the address part; ok is false when it does not exist (a :detail of an
// address without a delimiter, RFC 5233 §4).
func (a mailAddr) part(p addrPart, delim string) (string, bool) {
	if a.invalid {
		return a.raw, p == partAll
	}
	switch p {
	case partLocal:
		return a.local, true
	case partDomain:
		return a.domain, true
	case partUser, partDetail:
		i := strings.IndexAny(a.local, delim)
		if i < 0 {
			if p == partUser {
				return a.local, true
			}
			return "", false
		}
		if p == partUser {
			return a.local[:i], true
		}
		return a.local[i+1:], true
	}
	return a.all(), true
}

// splitAddr splits an addr-spec at its last '@' and unquotes the local part.
func splitAddr(s string) mailAddr {
	s = strings.TrimSpace(s)
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return mailAddr{local: unquoteLocal(s)}
	}
	return mailAddr{local: unquoteLocal(strings.TrimSpace(s[:i])), domain: strings.TrimSpace(s[i+1:]), hasDomain: true}
}

func unquoteLocal(l string) string {
	if len(l) >= 2 && l[0] == '"' && l[len(l)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(l)-1; i++ {
			if l[i] == '\\' && i+1 < len(l)-1 {
				i++
			}
			b.WriteByte(l[i])
		}
		return b.String()
	}
	return l
}

// parseAddressList parses an RFC 5322 address-list leniently: display names, comments,
// groups and routes are dropped; what is left of each element is the address. ok is
// false when an element is not an address at all (that element is marked invalid).
func parseAddressList(v string) (out []mailAddr, ok bool) {
	out, ok = parseAddressList0(v)
	for i := range out {
		a := &out[i]
		if a.invalid {
			continue
		}
		if !a.hasDomain || a.local == "" || a.domain == "" || !isASCII(a.local) || strings.ContainsAny(a.domain, " \t<>@,;:\"") {
			a.invalid, ok = true, false
		}
	}
	return out, ok
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func parseAddressList0(v string) (out []mailAddr, ok bool) {
	ok = true
	for _, elem := range splitTopLevel(stripComments(v), ',') {
		elem = strings.TrimSpace(elem)
		// A group "name: a, b;" — splitTopLevel kept the colon in the first element
		// and the semicolon in the last.
		if c := topIndex(elem, ':'); c >= 0 && topIndex(elem, '<') < 0 || (c >= 0 && c < topIndex(elem, '<')) {
			elem = strings.TrimSpace(elem[c+1:])
		}
		elem = strings.TrimSpace(strings.TrimSuffix(elem, ";"))
		if elem == "" {
			continue
		}
		if lt := topIndex(elem, '<'); lt >= 0 {
			gt := strings.LastIndexByte(elem, '>')
			if gt < lt {
				ok = false
				a := splitAddr(elem)
				a.invalid, a.raw = true, elem
				out = append(out, a)
				continue
			}
			inner := strings.TrimSpace(elem[lt+1 : gt])
			if c := strings.LastIndexByte(inner, ':'); c >= 0 && strings.HasPrefix(inner, "@") {
				inner = inner[c+1:] // obsolete route
			}
			if inner == "" {
				continue
			}
			a := splitAddr(inner)
			a.raw = elem // an invalid one is seen as written, brackets included
			out = append(out, a)
			continue
		}
		a := splitAddr(elem)
		a.raw = elem
		if strings.ContainsAny(a.local, " \t") && !strings.HasPrefix(strings.TrimSpace(elem), "\"") {
			a.invalid, ok = true, false
		}
		out = append(out, a)
	}
	return out, ok
}

// topIndex is the index of c outside quoted strings, or -1.
func topIndex(s string, c byte) int {
	q := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q:
			i++
		case s[i] == '"':
			q = !q
		case !q && s[i] == c:
			return i
		}
	}
	return -1
}

// splitTopLevel splits s at sep outside quotes and angle brackets.
func splitTopLevel(s string, sep byte) []string {
	var out []string
	q, angle, start := false, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && q:
			i++
		case c == '"':
			q = !q
		case !q && c == '<':
			angle++
		case !q && c == '>' && angle > 0:
			angle--
		case !q && angle == 0 && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// stripComments removes (comments) outside quoted strings.
func stripComments(s string) string {
	if strings.IndexByte(s, '(') < 0 {
		return s
	}
	var b strings.Builder
	q, depth := false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case depth == 0 && c == '\\' && q && i+1 < len(s):
			b.WriteByte(c)
			b.WriteByte(s[i+1])
			i++
			continue
		case depth == 0 && c == '"':
			q = !q
		case !q && c == '(':
			depth++
			continue
		case !q && c == ')' && depth > 0:
			depth--
			continue
		case depth > 0 && c == '\\':
			i++
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}
