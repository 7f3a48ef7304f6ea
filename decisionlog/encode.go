package decisionlog

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// The policies and tags columns are JSON (query.go decodes them with encoding/json).
// The writer encodes them by hand: encoding/json's reflection cost a few microseconds
// and several allocations a record, on the writer that the SMTP path shares its CPU
// with. The output is byte for byte encoding/json's (FuzzPolicyJSON checks it), but
// for a score that is not a number (encoding/json fails on NaN and infinities, and the
// record lost all its policy results): it is written as 0.

// appendPolicies appends ps as encoding/json would marshal it.
func appendPolicies(b []byte, ps []PolicyResult) []byte {
	b = append(b, '[')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, p.Name)
		if p.Stage != "" {
			b = append(b, `,"stage":`...)
			b = appendJSONString(b, p.Stage)
		}
		b = append(b, `,"status":`...)
		b = appendJSONString(b, p.Status)
		if p.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendJSONString(b, p.Reason)
		}
		if p.Score != 0 && !math.IsNaN(p.Score) && !math.IsInf(p.Score, 0) {
			b = append(b, `,"score":`...)
			b = appendJSONFloat(b, p.Score)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendStrings appends ss as encoding/json would marshal it.
func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json does (RFC 8259 section 7, with
// encoding/json's HTML escaping of <, > and &, U+2028 and U+2029 escaped, and invalid
// UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSONFloat appends a finite f as encoding/json does (its floatEncoder: the
// shortest representation, exponent form below 1e-6 and from 1e21, "e-07" shortened
// to "e-7").
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
