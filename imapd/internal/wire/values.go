package wire

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Range is seq-range or a lone seq-number; 0 stands for "*" (the largest number in use).
// Start may be above Stop: "4:2" is "2:4" (RFC 9051 §9, seq-range).
type Range struct{ Start, Stop uint32 }

// NumSet is a sequence set (message sequence numbers or UIDs, as the command says), or
// "$", the saved search result (RFC 5182).
type NumSet struct {
	Ranges    []Range
	SearchRes bool
}

// numSet reads a sequence-set: "$" or ranges joined by commas, at most MaxItems of them.
// Numbers are nz-number (a 0 is BAD, as a number beyond 2^32-1 is).
func (p *Parser) numSet() (NumSet, error) {
	if p.peek() == '$' {
		p.pos++
		return NumSet{SearchRes: true}, nil
	}
	var s NumSet
	one := func() (uint32, error) {
		if p.peek() == '*' {
			p.pos++
			return 0, nil
		}
		return p.nzNumber()
	}
	for {
		if len(s.Ranges) >= p.lim.MaxItems {
			return NumSet{}, &Error{Kind: Bad, Code: "LIMIT", Text: fmt.Sprintf("more than %d ranges in a sequence set", p.lim.MaxItems)}
		}
		a, err := one()
		if err != nil {
			return NumSet{}, err
		}
		b := a
		if p.peek() == ':' {
			p.pos++
			if b, err = one(); err != nil {
				return NumSet{}, err
			}
		}
		s.Ranges = append(s.Ranges, Range{a, b})
		if p.peek() != ',' {
			return s, nil
		}
		p.pos++
	}
}

// flag reads a flag: \Answered and the other system flags, \Extension, or a keyword atom.
// withRecent allows \Recent and \* (in FETCH responses and PERMANENTFLAGS only, so never
// in a command; kept for symmetry with the grammar's flag-perm).
func (p *Parser) flag() (string, error) {
	if p.peek() == '\\' {
		p.pos++
		a, err := p.atom()
		if err != nil {
			return "", bad("a flag needs a name after \\")
		}
		return `\` + a, nil
	}
	return p.atom()
}

// flagList reads "(" [flag *(SP flag)] ")".
func (p *Parser) flagList() ([]string, error) {
	var flags []string
	err := p.list(true, func() error {
		f, err := p.flag()
		flags = append(flags, f)
		return err
	})
	return flags, err
}

var months = [...]string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}

// date reads date: d[d]-Mon-yyyy, bare or quoted (RFC 9051 §9, date).
func (p *Parser) date() (time.Time, error) {
	quoted := p.peek() == '"'
	if quoted {
		p.pos++
	}
	text := p.span(func(c byte) bool {
		return c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	})
	if quoted {
		if err := p.expect('"'); err != nil {
			return time.Time{}, err
		}
	}
	t, ok := parseDate(text)
	if !ok {
		return time.Time{}, bad("invalid date %q (want d-Mon-yyyy)", text)
	}
	return t, nil
}

func parseDate(text string) (time.Time, bool) {
	parts := strings.Split(text, "-")
	if len(parts) != 3 || len(parts[0]) < 1 || len(parts[0]) > 2 || len(parts[2]) != 4 {
		return time.Time{}, false
	}
	day, ok1 := digits(parts[0])
	year, ok2 := digits(parts[2])
	mon := 0
	for i, m := range months {
		if strings.EqualFold(parts[1], m) {
			mon = i + 1
		}
	}
	if !ok1 || !ok2 || mon == 0 || day < 1 || day > 31 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(mon), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // 31-Feb
	}
	return t, true
}

func digits(s string) (int, bool) {
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, s != ""
}

// dateTime reads date-time: "dd-Mon-yyyy hh:mm:ss +zzzz", the day space- or zero-padded
// (RFC 9051 §9, date-time).
func (p *Parser) dateTime() (time.Time, error) {
	s, err := p.quoted()
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse("_2-Jan-2006 15:04:05 -0700", s)
	if err != nil {
		if t, err2 := time.Parse("02-Jan-2006 15:04:05 -0700", s); err2 == nil {
			return t, nil
		}
		return time.Time{}, bad("invalid date-time %q", s)
	}
	return t, nil
}

// DecodeMailbox turns a mailbox name in modified UTF-7 (RFC 3501 §5.1.3) into UTF-8.
// Names that are already UTF-8 (IMAP4rev2, UTF8=ACCEPT: RFC 9051 §5.1) pass unchanged when
// they contain no "&". A malformed shift sequence is an error (BAD, not a server bug).
func DecodeMailbox(name string) (string, error) {
	if !strings.Contains(name, "&") {
		return name, nil
	}
	var b strings.Builder
	for i := 0; i < len(name); {
		c := name[i]
		if c != '&' {
			if c < 0x20 || c > 0x7e {
				if c >= 0x80 && utf8.ValidString(name) {
					b.WriteByte(c)
					i++
					continue
				}
				return "", fmt.Errorf("mailbox name %q: invalid character", name)
			}
			b.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(name[i+1:], '-')
		if j < 0 {
			return "", fmt.Errorf("mailbox name %q: unterminated & sequence", name)
		}
		enc := name[i+1 : i+1+j]
		i += j + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		units, ok := decodeB64UTF16(enc)
		if !ok {
			return "", fmt.Errorf("mailbox name %q: invalid & sequence", name)
		}
		for _, r := range utf16.Decode(units) {
			if r == utf8.RuneError || r < 0x80 && r >= 0x20 && r <= 0x7e {
				// Printable US-ASCII must not be encoded (RFC 3501 §5.1.3).
				return "", fmt.Errorf("mailbox name %q: invalid & sequence", name)
			}
			b.WriteRune(r)
		}
		if i < len(name) && name[i] == '&' && i+1 < len(name) && name[i+1] != '-' {
			return "", fmt.Errorf("mailbox name %q: adjacent & sequences", name)
		}
	}
	return b.String(), nil
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

func decodeB64UTF16(s string) ([]uint16, bool) {
	var bits, nbits uint32
	var out []byte
	for _, c := range []byte(s) {
		v := strings.IndexByte(b64, c)
		if v < 0 {
			return nil, false
		}
		bits = bits<<6 | uint32(v)
		nbits += 6
		if nbits >= 8 {
			nbits -= 8
			out = append(out, byte(bits>>nbits))
			bits &= 1<<nbits - 1
		}
	}
	if bits != 0 || len(out)%2 != 0 || len(out) == 0 {
		return nil, false // leftover bits must be zero; whole UTF-16 units only
	}
	units := make([]uint16, len(out)/2)
	for i := range units {
		units[i] = uint16(out[2*i])<<8 | uint16(out[2*i+1])
	}
	// A lone surrogate is not a character.
	for i := 0; i < len(units); i++ {
		u := units[i]
		switch {
		case u >= 0xD800 && u < 0xDC00:
			if i+1 >= len(units) || units[i+1] < 0xDC00 || units[i+1] >= 0xE000 {
				return nil, false
			}
			i++
		case u >= 0xDC00 && u < 0xE000:
			return nil, false
		}
	}
	return units, true
}
