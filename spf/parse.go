package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// mechanism kinds (RFC 7208 §5).
type kind uint8

const (
	mAll kind = iota
	mInclude
	mA
	mMX
	mPTR
	mIP4
	mIP6
	mExists
)

var kindNames = map[string]kind{
	"all": mAll, "include": mInclude, "a": mA, "mx": mMX, "ptr": mPTR,
	"ip4": mIP4, "ip6": mIP6, "exists": mExists,
}

// directive is one parsed mechanism with its qualifier.
type directive struct {
	result Status
	kind   kind
	domain *macroString // target domain-spec, nil when absent
	cidr4  int          // a, mx: IPv4 prefix length
	cidr6  int          // a, mx: IPv6 prefix length
	prefix netip.Prefix // ip4, ip6
	text   string       // the term as written
}

// record is a parsed SPF record.
type record struct {
	directives []directive
	redirect   *macroString
	exp        *macroString
}

// isSPFRecord reports whether a TXT record is an SPF version 1 record: "v=spf1" in any
// case followed by a space or the end (§4.5).
func isSPFRecord(s string) bool {
	return len(s) >= 6 && strings.EqualFold(s[:6], "v=spf1") && (len(s) == 6 || s[6] == ' ')
}

// parseRecord parses a whole record; any syntax error anywhere is an error (§4.6), even in
// a term that evaluation would never reach.
func parseRecord(s string) (*record, error) {
	if len(s) > maxRecordLen {
		return nil, fmt.Errorf("record is %d bytes long, over %d", len(s), maxRecordLen)
	}
	for i := 0; i < len(s); i++ {
		// §3.1 / §4.6.1: records are 7-bit ASCII; terms are separated by spaces only.
		if c := s[i]; c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("invalid character 0x%02x at offset %d", c, i)
		}
	}
	if !isSPFRecord(s) {
		return nil, errors.New("not an SPF record")
	}
	rec := &record{}
	for _, term := range strings.Split(s[6:], " ") {
		if term == "" {
			continue
		}
		if err := rec.addTerm(term); err != nil {
			return nil, fmt.Errorf("term %q: %w", term, err)
		}
	}
	return rec, nil
}

func (rec *record) addTerm(term string) error {
	// §4.6.1: a modifier is a name followed by "=" before any ":" or "/".
	if i := strings.IndexAny(term, ":/="); i >= 0 && term[i] == '=' {
		name, value := term[:i], term[i+1:]
		if !validModifierName(name) {
			return errors.New("invalid modifier name")
		}
		switch strings.ToLower(name) {
		case "redirect", "exp":
			ms, err := parseDomainSpec(value, false)
			if err != nil {
				return err
			}
			// §6: each of these modifiers may appear at most once.
			if strings.EqualFold(name, "redirect") {
				if rec.redirect != nil {
					return errors.New("redirect appears twice")
				}
				rec.redirect = ms
			} else {
				if rec.exp != nil {
					return errors.New("exp appears twice")
				}
				rec.exp = ms
			}
		default:
			// §6: unknown modifiers are ignored, but must be well-formed.
			if _, err := parseMacroString(value, false); err != nil {
				return err
			}
		}
		return nil
	}
	d := directive{result: Pass, text: term, cidr4: 32, cidr6: 128}
	switch term[0] {
	case '+':
		term = term[1:]
	case '-':
		d.result, term = Fail, term[1:]
	case '~':
		d.result, term = SoftFail, term[1:]
	case '?':
		d.result, term = Neutral, term[1:]
	}
	end := strings.IndexAny(term, ":/")
	if end < 0 {
		end = len(term)
	}
	k, ok := kindNames[strings.ToLower(term[:end])]
	if !ok {
		return errors.New("unknown mechanism")
	}
	d.kind = k
	rest := term[end:]
	var err error
	switch k {
	case mAll:
		if rest != "" {
			return errors.New("all takes no argument")
		}
	case mInclude, mExists:
		if !strings.HasPrefix(rest, ":") {
			return errors.New("missing domain")
		}
		d.domain, err = parseDomainSpec(rest[1:], false)
	case mPTR:
		if rest != "" {
			if rest[0] != ':' {
				return errors.New("ptr takes no prefix length")
			}
			d.domain, err = parseDomainSpec(rest[1:], false)
		}
	case mA, mMX:
		spec, cidr := splitDualCIDR(rest)
		if d.cidr4, d.cidr6, err = parseDualCIDR(cidr); err != nil {
			return err
		}
		if spec != "" {
			if spec[0] != ':' {
				return errors.New("invalid argument")
			}
			d.domain, err = parseDomainSpec(spec[1:], false)
		}
	case mIP4, mIP6:
		if !strings.HasPrefix(rest, ":") {
			return errors.New("missing address")
		}
		d.prefix, err = parseNetwork(rest[1:], k == mIP6)
	}
	if err != nil {
		return err
	}
	rec.directives = append(rec.directives, d)
	return nil
}

// validModifierName: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) (§12).
func validModifierName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for i := 1; i < len(n); i++ {
		c := n[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// splitDualCIDR splits "[:domain-spec][/n][//n]" into the domain part and the trailing
// dual-cidr-length, which is recognised from the end of the term.
func splitDualCIDR(s string) (spec, cidr string) {
	end := len(s)
	// "//digits" at the end
	if i := strings.LastIndex(s, "//"); i >= 0 && allDigits(s[i+2:]) && i+2 < len(s) {
		end = i
	}
	// "/digits" just before
	if i := strings.LastIndexByte(s[:end], '/'); i >= 0 && i+1 < end && allDigits(s[i+1:end]) {
		end = i
	}
	return s[:end], s[end:]
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func parseDualCIDR(s string) (c4, c6 int, err error) {
	c4, c6 = 32, 128
	if s == "" {
		return c4, c6, nil
	}
	if v6, ok := strings.CutPrefix(s, "//"); ok {
		c6, err = parseCIDR(v6, 128)
		return c4, c6, err
	}
	v4, v6, two := strings.Cut(s[1:], "//")
	if c4, err = parseCIDR(v4, 32); err != nil {
		return 0, 0, err
	}
	if two {
		c6, err = parseCIDR(v6, 128)
	}
	return c4, c6, err
}

// parseCIDR parses a prefix length: "0" or a number without leading zero, at most max
// (§12: ip4-cidr-length, ip6-cidr-length).
func parseCIDR(s string, max int) (int, error) {
	if s == "" || !allDigits(s) || (len(s) > 1 && s[0] == '0') || len(s) > 3 {
		return 0, fmt.Errorf("invalid prefix length %q", s)
	}
	n, _ := strconv.Atoi(s)
	if n > max {
		return 0, fmt.Errorf("prefix length %d over %d", n, max)
	}
	return n, nil
}

// parseNetwork parses the argument of ip4: or ip6:.
func parseNetwork(s string, six bool) (netip.Prefix, error) {
	addr, length, hasLen := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" || a.Is4() == six {
		return netip.Prefix{}, fmt.Errorf("invalid address %q", addr)
	}
	bits := a.BitLen()
	if hasLen {
		if bits, err = parseCIDR(length, a.BitLen()); err != nil {
			return netip.Prefix{}, err
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}
