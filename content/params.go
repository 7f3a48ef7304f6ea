package content

import (
	"bytes"
	"io"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// param is one parameter of a Content-Type or Content-Disposition field, as written.
type param struct {
	name  string // lower case, with any RFC 2231 "*N*" suffix
	value string // unquoted
}

// parseParamField splits a structured field value ("type/subtype; a=b; c=\"d\"") into its
// lower-case first token and its parameters, leniently: a missing "=", an unterminated
// quote or stray characters set bad but never lose the parameters around them. Unquoted
// values run to the next ";" so that `filename=my file.exe` keeps its space, as mail
// clients read it.
func parseParamField(v string) (token string, params []param, bad bool) {
	i := strings.IndexByte(v, ';')
	if i < 0 {
		return strings.ToLower(strings.TrimSpace(stripComment(v))), nil, false
	}
	token = strings.ToLower(strings.TrimSpace(stripComment(v[:i])))
	s := v[i+1:]
	for len(params) < 64 {
		s = strings.TrimLeft(s, " \t\r\n;")
		if s == "" {
			break
		}
		j := strings.IndexAny(s, "=;")
		if j < 0 || s[j] == ';' {
			// A parameter without a value.
			bad = true
			if j < 0 {
				break
			}
			s = s[j:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(s[:j]))
		if name == "" || strings.ContainsAny(name, " \t\"") {
			bad = true
		}
		s = strings.TrimLeft(s[j+1:], " \t\r\n")
		var val string
		if strings.HasPrefix(s, "\"") {
			var b strings.Builder
			k := 1
			closed := false
			for ; k < len(s); k++ {
				c := s[k]
				if c == '\\' && k+1 < len(s) {
					k++
					b.WriteByte(s[k])
					continue
				}
				if c == '"' {
					closed = true
					k++
					break
				}
				if c == '\r' || c == '\n' {
					continue
				}
				b.WriteByte(c)
			}
			if !closed {
				bad = true
			}
			val = b.String()
			s = s[k:]
			// Anything between the closing quote and the next ";" is garbage.
			if e := strings.IndexByte(s, ';'); e >= 0 {
				if strings.TrimSpace(stripComment(s[:e])) != "" {
					bad = true
				}
				s = s[e:]
			} else {
				if strings.TrimSpace(stripComment(s)) != "" {
					bad = true
				}
				s = ""
			}
		} else {
			e := strings.IndexByte(s, ';')
			if e < 0 {
				e = len(s)
			}
			val = strings.TrimSpace(stripComment(s[:e]))
			s = s[e:]
		}
		if name != "" {
			params = append(params, param{name: name, value: val})
		}
	}
	return token, params, bad
}

// stripComment removes RFC 5322 comments "(...)" outside quotes (bounded nesting).
func stripComment(s string) string {
	if strings.IndexByte(s, '(') < 0 {
		return s
	}
	var b strings.Builder
	depth := 0
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case c == '"' && depth == 0:
			inQuote = !inQuote
			b.WriteByte(c)
		case c == '(' && !inQuote:
			depth++
		case c == ')' && !inQuote && depth > 0:
			depth--
		default:
			if depth == 0 {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// simpleParam returns the value of a plain parameter (boundary, charset) and whether it
// was given more than once with different values.
func simpleParam(params []param, name string) (val string, dup bool) {
	found := false
	for _, p := range params {
		if p.name != name {
			continue
		}
		if found {
			if p.value != val {
				dup = true
			}
			continue
		}
		val, found = p.value, true
	}
	return val, dup
}

// nameValues decodes every value a file-name parameter (base is "filename" or "name")
// takes in params: the plain form (with RFC 2047 words, which many clients send), the RFC
// 2231 extended form and its continuations (RFC 2231 §3, §4). It returns the distinct
// values, extended first, and problem codes: duplicate_param (the same parameter twice,
// on which parsers disagree), name_conflict (plain and extended forms differ),
// continuation_gap, undecodable_name, unknown_charset.
func nameValues(params []param, base string) (vals []string, problems []string) {
	var plain []string
	var ext []string
	type seg struct {
		v   string
		enc bool
	}
	var segs map[int]seg
	dupSeg := false
	for _, p := range params {
		if !strings.HasPrefix(p.name, base) {
			continue
		}
		rest := p.name[len(base):]
		switch {
		case rest == "":
			plain = append(plain, p.value)
		case rest == "*":
			ext = append(ext, p.value)
		case rest[0] == '*':
			nstr := strings.TrimSuffix(rest[1:], "*")
			n, err := strconv.Atoi(nstr)
			if err != nil || n < 0 || n > 999 {
				problems = appendOnce(problems, "undecodable_name")
				continue
			}
			if segs == nil {
				segs = make(map[int]seg)
			}
			if _, ok := segs[n]; ok {
				dupSeg = true
				continue
			}
			segs[n] = seg{v: p.value, enc: strings.HasSuffix(rest, "*")}
		}
	}
	if len(plain) > 1 || len(ext) > 1 || dupSeg {
		problems = appendOnce(problems, "duplicate_param")
	}
	var decoded []string
	for _, e := range ext {
		v, probs := decode2231(e, true)
		problems = appendAll(problems, probs)
		decoded = append(decoded, v)
	}
	if len(segs) > 0 {
		var raw strings.Builder
		enc := segs[0].enc
		for n := 0; n < len(segs); n++ {
			s, ok := segs[n]
			if !ok {
				problems = appendOnce(problems, "continuation_gap")
				break
			}
			if n > 0 && !s.enc {
				// RFC 2231 §4.1: unencoded pieces are taken literally; escape them
				// so that the whole value can be percent-decoded at once.
				raw.WriteString(escapePct(s.v))
				continue
			}
			raw.WriteString(s.v)
		}
		v := raw.String()
		if enc {
			var probs []string
			v, probs = decode2231(v, true)
			problems = appendAll(problems, probs)
		} else {
			v, _ = decode2231(v, false)
		}
		decoded = append(decoded, v)
	}
	for _, p := range plain {
		v := p
		if strings.Contains(v, "=?") {
			d, err := wordDecoder.DecodeHeader(v)
			if err != nil {
				problems = appendOnce(problems, "undecodable_name")
			} else {
				v = d
			}
		}
		decoded = append(decoded, v)
	}
	for _, v := range decoded {
		if !utf8.ValidString(v) {
			problems = appendOnce(problems, "undecodable_name")
			v = strings.ToValidUTF8(v, "\uFFFD")
		}
		if !containsString(vals, v) {
			vals = append(vals, v)
		}
	}
	if len(vals) > 1 && (len(ext) > 0 || len(segs) > 0) && len(plain) > 0 {
		problems = appendOnce(problems, "name_conflict")
	}
	return vals, problems
}

func escapePct(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	return strings.ReplaceAll(s, "%", "%25")
}

// decode2231 decodes an RFC 2231 extended value `charset'language'percent-encoded`
// (RFC 2231 §4). With hasCharset false only the percent-decoding is done.
func decode2231(v string, hasCharset bool) (string, []string) {
	var problems []string
	cs := "us-ascii"
	if hasCharset {
		p := strings.SplitN(v, "'", 3)
		if len(p) == 3 {
			cs, v = p[0], p[2]
		} else {
			problems = append(problems, "undecodable_name")
		}
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '%' {
			if i+2 < len(v) {
				if h, ok := unhex2(v[i+1], v[i+2]); ok {
					b = append(b, h)
					i += 2
					continue
				}
			}
			problems = appendOnce(problems, "undecodable_name")
		}
		b = append(b, c)
	}
	s, err := toUTF8(cs, b)
	if err != nil {
		problems = appendOnce(problems, "unknown_charset")
		problems = appendOnce(problems, "undecodable_name")
	}
	return s, problems
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isUTF8Label reports whether a charset label needs no conversion.
func isUTF8Label(cs string) bool {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968", "x-unknown", "unknown-8bit":
		return true
	}
	return false
}

// toUTF8 converts b from charset cs to UTF-8 with go-message's charset tables. On an
// unknown charset it returns the bytes with invalid UTF-8 replaced, and an error.
func toUTF8(cs string, b []byte) (string, error) {
	if isUTF8Label(cs) || (asciiCompatible(cs) && isASCII(b)) {
		if utf8.Valid(b) {
			return string(b), nil
		}
		return strings.ToValidUTF8(string(b), "\uFFFD"), nil
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD"), err
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(4*len(b)+16)))
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD"), err
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), nil
}

// wordDecoder decodes RFC 2047 encoded words with go-message's charsets.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

func appendOnce(list []string, s string) []string {
	if containsString(list, s) {
		return list
	}
	return append(list, s)
}

func appendAll(list, add []string) []string {
	for _, s := range add {
		list = appendOnce(list, s)
	}
	return list
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// asciiCompatible reports whether a charset encodes ASCII text as itself, so that pure
// ASCII bytes need no conversion; UTF-16/32, UTF-7 and the ISO-2022 family do not.
func asciiCompatible(cs string) bool {
	l := strings.ToLower(cs)
	for _, x := range []string{"16", "32", "utf-7", "utf7", "2022", "hz", "ucs", "ebcdic", "ibm0", "cp0", "ibm-0", "cp-0"} {
		if strings.Contains(l, x) {
			return false
		}
	}
	return true
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || c == 0x1b {
			return false
		}
	}
	return true
}
