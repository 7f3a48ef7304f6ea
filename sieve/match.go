package sieve

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// comparator is one of the RFC 4790 collations Sieve names (RFC 5228 §2.7.3).
type comparator uint8

const (
	cmpCasemap comparator = iota // i;ascii-casemap, the default
	cmpOctet                     // i;octet
	cmpNumeric                   // i;ascii-numeric
)

func comparatorByName(s string) (comparator, bool) {
	switch strings.ToLower(s) {
	case "i;ascii-casemap":
		return cmpCasemap, true
	case "i;octet":
		return cmpOctet, true
	case "i;ascii-numeric":
		return cmpNumeric, true
	}
	return 0, false
}

type matchType uint8

const (
	mIs matchType = iota
	mContains
	mMatches
	mRegex
	mValue
	mCount
)

// relOp is a relational operator (RFC 5231 §4).
type relOp uint8

const (
	relGT relOp = iota
	relGE
	relLT
	relLE
	relEQ
	relNE
)

func relByName(s string) (relOp, bool) {
	switch strings.ToLower(s) {
	case "gt":
		return relGT, true
	case "ge":
		return relGE, true
	case "lt":
		return relLT, true
	case "le":
		return relLE, true
	case "eq":
		return relEQ, true
	case "ne":
		return relNE, true
	}
	return 0, false
}

func (o relOp) holds(c int) bool {
	switch o {
	case relGT:
		return c > 0
	case relGE:
		return c >= 0
	case relLT:
		return c < 0
	case relLE:
		return c <= 0
	case relEQ:
		return c == 0
	}
	return c != 0
}

func foldByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] && foldByte(a[i]) != foldByte(b[i]) {
			return false
		}
	}
	return true
}

func containsFoldASCII(s, sub string) bool {
	if len(sub) == 0 {
		return true
	}
	if len(s) > 4096 && len(sub) > 16 {
		// Long inputs: fold once and search in linear time.
		return strings.Contains(lowerASCII(s), lowerASCII(sub))
	}
	if len(sub) > len(s) {
		return false
	}
	// Candidates are where sub's first byte occurs in either case, found with
	// IndexByte (vectorised) rather than by folding every byte of s.
	lo, up := sub[0], sub[0]
	if 'A' <= lo && lo <= 'Z' {
		lo += 'a' - 'A'
	} else if 'a' <= up && up <= 'z' {
		up -= 'a' - 'A'
	}
	starts := s[:len(s)-len(sub)+1]
	nextLo, nextUp := -1, -1 // the next occurrence of each at or after i; -2: none left
	for i := 0; i < len(starts); i++ {
		if nextLo != -2 && nextLo < i {
			if j := strings.IndexByte(starts[i:], lo); j >= 0 {
				nextLo = i + j
			} else {
				nextLo = -2
			}
		}
		if up == lo {
			nextUp = nextLo
		} else if nextUp != -2 && nextUp < i {
			if j := strings.IndexByte(starts[i:], up); j >= 0 {
				nextUp = i + j
			} else {
				nextUp = -2
			}
		}
		switch {
		case nextLo == -2 && nextUp == -2:
			return false
		case nextLo == -2:
			i = nextUp
		case nextUp == -2:
			i = nextLo
		default:
			i = min(nextLo, nextUp)
		}
		if equalFoldASCII(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// numericValue is the i;ascii-numeric value of s: its leading digits, or infinity (ok
// false) when it starts with none (RFC 4790 §9.1).
func numericValue(s string) (digits string, ok bool) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return "", false
	}
	d := strings.TrimLeft(s[:i], "0")
	return d, true
}

func (c comparator) compare(a, b string) int {
	switch c {
	case cmpNumeric:
		da, oka := numericValue(a)
		db, okb := numericValue(b)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return 1
		case !okb:
			return -1
		}
		if len(da) != len(db) {
			if len(da) < len(db) {
				return -1
			}
			return 1
		}
		return strings.Compare(da, db)
	case cmpCasemap:
		n := min(len(a), len(b))
		for i := 0; i < n; i++ {
			x, y := foldByte(a[i]), foldByte(b[i])
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
		}
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func (c comparator) equal(a, b string) bool {
	switch c {
	case cmpCasemap:
		return equalFoldASCII(a, b)
	case cmpNumeric:
		return c.compare(a, b) == 0
	}
	return a == b
}

func (c comparator) contains(s, sub string) bool {
	if c == cmpCasemap {
		return containsFoldASCII(s, sub)
	}
	return strings.Contains(s, sub)
}

// globMatch matches s against a :matches pattern (RFC 5228 §2.7.1): "*" any sequence,
// "?" one character, "\" escapes. caps, when not nil, receives what each wildcard
// matched, in order; earlier wildcards match as little as possible (as Pigeonhole's
// non-greedy matching does). budget bounds the work: the match runs in O(len(pat) ×
// len(s)) steps (one backtracking point, the last star), and gives up, setting
// *budget to -1, when the budget runs out.
func globMatch(pat, s string, fold bool, caps *[]string, budget *int) bool {
	type span struct{ start, end int }
	var wild []span
	p, i := 0, 0
	starP, starI, starW := -1, 0, 0
	for i < len(s) || p < len(pat) {
		*budget--
		if *budget < 0 {
			*budget = -1
			return false
		}
		if p < len(pat) {
			c := pat[p]
			switch {
			case c == '*':
				wild = append(wild, span{i, i})
				starP, starI, starW = p+1, i, len(wild)-1
				p++
				continue
			case c == '?':
				if i < len(s) {
					_, w := utf8.DecodeRuneInString(s[i:])
					wild = append(wild, span{i, i + w})
					i += w
					p++
					continue
				}
			default:
				lit, n := c, 1
				if c == '\\' && p+1 < len(pat) {
					lit, n = pat[p+1], 2
				}
				if i < len(s) && (s[i] == lit || fold && foldByte(s[i]) == foldByte(lit)) {
					i++
					p += n
					continue
				}
			}
		}
		// Mismatch: let the last star take one more character.
		if starP >= 0 && starI < len(s) {
			_, w := utf8.DecodeRuneInString(s[starI:])
			starI += w
			wild = wild[:starW+1]
			wild[starW].end = starI
			p, i = starP, starI
			continue
		}
		return false
	}
	if caps != nil {
		*caps = (*caps)[:0]
		for _, w := range wild {
			*caps = append(*caps, s[w.start:w.end])
		}
	}
	return true
}

// compileRegex compiles a :regex key (draft-ietf-sieve-regex: POSIX extended syntax;
// Go's RE2 accepts it, runs in linear time, and bounds memory by the pattern size).
func compileRegex(key string, c comparator) (*regexp.Regexp, error) {
	if c == cmpCasemap {
		key = "(?i)" + key
	}
	return regexp.Compile(key)
}

// maxMatch is the highest match variable index (Pigeonhole keeps 32 match values).
const maxMatch = 32

func itoa(n int) string { return strconv.Itoa(n) }
