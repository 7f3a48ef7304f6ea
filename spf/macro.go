package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// macroString is a parsed macro-string (RFC 7208 §7.1).
type macroString struct {
	parts []macroPart
	raw   string
}

// macroPart is a literal (letter == 0) or one macro-expand.
type macroPart struct {
	lit     string
	letter  byte // lower-case macro letter; 0 for a literal
	escape  bool // upper-case letter: URL-escape the expansion (§7.3)
	digits  int  // keep this many right-hand parts; 0 = all
	reverse bool
	delims  string
}

const maxMacroLen = 1024 // a macro-string longer than this is refused

// parseMacroString parses a macro-string. Letters c, r and t are allowed only in
// explanation strings (exp true, §7.2).
func parseMacroString(s string, exp bool) (*macroString, error) {
	if len(s) > maxMacroLen {
		return nil, fmt.Errorf("macro string of %d bytes is too long", len(s))
	}
	ms := &macroString{raw: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			ms.parts = append(ms.parts, macroPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			if !(exp && c == ' ') { // explanation text may hold spaces (§6.2)
				return nil, fmt.Errorf("invalid character 0x%02x in macro string", c)
			}
		}
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return nil, errors.New("macro string ends with %")
		}
		i++
		switch s[i] {
		case '%':
			lit.WriteByte('%')
			continue
		case '_':
			lit.WriteByte(' ')
			continue
		case '-':
			lit.WriteString("%20")
			continue
		case '{':
		default:
			return nil, fmt.Errorf("invalid macro %%%c", s[i])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, errors.New("unterminated macro")
		}
		body := s[i+1 : i+end]
		i += end
		p, err := parseMacro(body, exp)
		if err != nil {
			return nil, err
		}
		flush()
		// §7.1: escapes (%%, %_, %-) are macro-expands too, which matters for domain-end;
		// keep them as their own literal parts so that parseDomainSpec can tell.
		ms.parts = append(ms.parts, p)
	}
	flush()
	return ms, nil
}

func parseMacro(body string, exp bool) (macroPart, error) {
	if body == "" {
		return macroPart{}, errors.New("empty macro")
	}
	l := body[0]
	p := macroPart{letter: l | 0x20, escape: l >= 'A' && l <= 'Z'}
	switch p.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !exp {
			return p, fmt.Errorf("macro %%{%c} is allowed only in explanations", l)
		}
	default:
		return p, fmt.Errorf("unknown macro letter %q", l)
	}
	rest := body[1:]
	n := 0
	for n < len(rest) && isDigit(rest[n]) {
		n++
	}
	if n > 0 {
		v, err := strconv.Atoi(rest[:n])
		// §7.1: if a DIGIT is specified, the value MUST be nonzero.
		if err != nil || v == 0 || v > 128 {
			return p, fmt.Errorf("invalid transformer digits %q", rest[:n])
		}
		p.digits = v
		rest = rest[n:]
	}
	if rest != "" && (rest[0] == 'r' || rest[0] == 'R') {
		p.reverse = true
		rest = rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[i])) {
			return p, fmt.Errorf("invalid delimiter %q", rest[i])
		}
	}
	p.delims = rest
	return p, nil
}

// parseDomainSpec parses a domain-spec: a macro-string ending in a macro-expand or in
// "." toplabel ["."] (§7.1).
func parseDomainSpec(s string, exp bool) (*macroString, error) {
	if s == "" {
		return nil, errors.New("empty domain-spec")
	}
	ms, err := parseMacroString(s, exp)
	if err != nil {
		return nil, err
	}
	// Ends with a macro-expand: %{...}, %%, %_ or %-.
	if strings.HasSuffix(s, "}") && len(ms.parts) > 0 && ms.parts[len(ms.parts)-1].letter != 0 {
		return ms, nil
	}
	if strings.HasSuffix(s, "%%") || strings.HasSuffix(s, "%_") || strings.HasSuffix(s, "%-") {
		// Count the run of '%' before the final escape character: an odd run means the
		// string really ends with an escape.
		n := 0
		for j := len(s) - 2; j >= 0 && s[j] == '%'; j-- {
			n++
		}
		if n%2 == 1 {
			return ms, nil
		}
	}
	t := strings.TrimSuffix(s, ".")
	dot := strings.LastIndexByte(t, '.')
	if dot < 0 || !validTopLabel(t[dot+1:]) || strings.ContainsAny(t[dot+1:], "%{}") {
		return nil, fmt.Errorf("domain-spec %q does not end in a valid top label", s)
	}
	return ms, nil
}

// validTopLabel: toplabel = ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) (§7.1).
func validTopLabel(l string) bool {
	if l == "" {
		return false
	}
	alpha := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case isAlpha(c):
			alpha = true
		case isDigit(c):
		case c == '-':
			if i == 0 || i == len(l)-1 {
				return false
			}
			alpha = true // the second form needs no letter
		default:
			return false
		}
	}
	return alpha
}

// macroEnv holds the values macros expand to.
type macroEnv struct {
	sender, local, senderDomain, domain, helo string
	ip                                        netip.Addr
	ptr                                       func() string // %{p}, computed on demand
	receiver                                  string
	now                                       int64
}

// expand expands ms. When domain is set the result is a domain name, shortened from the
// left to 253 octets (§7.3).
func (ms *macroString) expand(env *macroEnv, domain bool) string {
	var b strings.Builder
	for _, p := range ms.parts {
		if p.letter == 0 {
			b.WriteString(p.lit)
			continue
		}
		b.WriteString(p.expand(env))
	}
	s := b.String()
	if domain {
		s = truncateDomain(s)
	}
	return s
}

func (p macroPart) expand(env *macroEnv) string {
	var v string
	switch p.letter {
	case 's':
		v = env.sender
	case 'l':
		v = env.local
	case 'o':
		v = env.senderDomain
	case 'd':
		v = env.domain
	case 'i':
		v = dotIP(env.ip)
	case 'p':
		v = env.ptr()
	case 'v':
		v = "in-addr"
		if env.ip.Is6() {
			v = "ip6"
		}
	case 'h':
		v = env.helo
	case 'c':
		v = env.ip.String()
	case 'r':
		v = env.receiver
	case 't':
		v = strconv.FormatInt(env.now, 10)
	}
	if p.digits > 0 || p.reverse || p.delims != "" {
		delims := p.delims
		if delims == "" {
			delims = "."
		}
		parts := splitAny(v, delims)
		if p.reverse {
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
		}
		if p.digits > 0 && p.digits < len(parts) {
			parts = parts[len(parts)-p.digits:]
		}
		v = strings.Join(parts, ".")
	}
	if p.escape {
		v = urlEscape(v)
	}
	return v
}

func splitAny(s, delims string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(delims, s[i]) >= 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// dotIP is the %{i} form: dotted quad, or 32 dot-separated nibbles for IPv6 (§7.3).
func dotIP(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	a := ip.As16()
	const hex = "0123456789ABCDEF" // upper case, as in the examples of §7.4
	b := make([]byte, 0, 63)
	for i, x := range a {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, hex[x>>4], '.', hex[x&15])
	}
	return string(b)
}

// urlEscape escapes every character outside RFC 3986 "unreserved" (§7.3).
func urlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// truncateDomain removes labels from the left until s is at most 253 octets (§7.3).
func truncateDomain(s string) string {
	for len(strings.TrimSuffix(s, ".")) > maxDomainLen {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return s
		}
		s = s[i+1:]
	}
	return s
}
