package headers

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// Syntax is the dialect of a table file.
type Syntax int

// The two Postfix regular-expression table types.
const (
	PCRE   Syntax = iota // pcre_table(5): Perl-compatible
	Regexp               // regexp_table(5): POSIX extended (or basic, flag x)
)

func (s Syntax) String() string {
	if s == Regexp {
		return "regexp"
	}
	return "pcre"
}

// DefaultMatchTimeout bounds one match of a pattern that only the backtracking engine
// accepts.
const DefaultMatchTimeout = 100 * time.Millisecond

// regex is one compiled pattern.
type regex struct {
	re2  *regexp.Regexp
	bt   *regexp2.Regexp
	ngrp int
	// lits are literals every match contains (lower case when folded), so that a line
	// without one of them is rejected without running the engine.
	lits []literal
}

type literal struct {
	s    string
	fold bool
}

// Engine reports which engine runs the pattern: "re2" or "regexp2".
func (r *regex) Engine() string {
	if r.re2 != nil {
		return "re2"
	}
	return "regexp2"
}

// compileRegex compiles a pattern with Postfix flags. Each flag letter toggles a
// default (pcre_table(5), regexp_table(5)).
func compileRegex(pat, flags string, syn Syntax, timeout time.Duration) (*regex, error) {
	// Postfix defaults: case-insensitive; for pcre also DOTALL ("." matches the newline
	// inside a folded header), as pcre_table(5) documents since Postfix 2.0.
	icase, multi, dotall, ext, anch, ungreedy, posixExt := true, false, syn == PCRE, false, false, false, true
	for _, f := range flags {
		switch {
		case f == 'i':
			icase = !icase
		case f == 'm':
			multi = !multi
		case syn == PCRE && f == 's':
			dotall = !dotall
		case syn == PCRE && f == 'x':
			ext = !ext
		case syn == PCRE && f == 'A':
			anch = !anch
		case syn == PCRE && (f == 'E' || f == 'X'):
			// DOLLAR_ENDONLY: our subjects never end in a newline, so "$" means the
			// same either way. EXTRA only makes unknown escapes errors.
		case syn == PCRE && f == 'U':
			ungreedy = !ungreedy
		case syn == Regexp && f == 'x':
			posixExt = !posixExt
		default:
			return nil, fmt.Errorf("unknown %s flag %q", syn, f)
		}
	}
	if !utf8.ValidString(pat) {
		return nil, fmt.Errorf("pattern is not valid UTF-8")
	}
	if syn == PCRE {
		pat = utf8Escapes(pat)
	}
	if syn == Regexp {
		// POSIX without REG_NEWLINE: "." matches a newline and ^ $ anchor the whole
		// subject; the m flag sets REG_NEWLINE.
		if !posixExt {
			pat = breToERE(pat)
		}
		dotall = !multi
		pat = gnuEscapes(posixBrackets(pat))
	}
	var prefix strings.Builder
	prefix.WriteString("(?")
	if icase {
		prefix.WriteByte('i')
	}
	if multi {
		prefix.WriteByte('m')
	}
	if dotall {
		prefix.WriteByte('s')
	}
	if ungreedy {
		prefix.WriteByte('U')
	}
	p := pat
	if anch {
		p = `\A(?:` + p + `)`
	}
	full := p
	if prefix.Len() > 2 {
		full = prefix.String() + ")" + p
	}
	if !ext {
		var re *regexp.Regexp
		var err error
		if syn == Regexp {
			re, err = regexp.Compile(full)
			if err == nil {
				re.Longest() // POSIX leftmost-longest, as regexec(3)
			}
		} else {
			re, err = regexp.Compile(full)
		}
		if err == nil {
			r := &regex{re2: re, ngrp: re.NumSubexp()}
			r.lits = requiredLiterals(full)
			return r, nil
		}
	}
	if ungreedy {
		return nil, fmt.Errorf("pattern needs the backtracking engine, which has no ungreedy (U) mode")
	}
	opt := regexp2.RegexOptions(regexp2.None)
	if icase {
		opt |= regexp2.IgnoreCase
	}
	if multi {
		opt |= regexp2.Multiline
	}
	if dotall {
		opt |= regexp2.Singleline
	}
	if ext {
		opt |= regexp2.IgnorePatternWhitespace
	}
	bt, err := regexp2.Compile(p, opt)
	if err != nil {
		return nil, fmt.Errorf("bad pattern: %w", err)
	}
	if timeout <= 0 {
		timeout = DefaultMatchTimeout
	}
	bt.MatchTimeout = timeout
	n := 0
	for _, g := range bt.GetGroupNumbers() {
		if g > n {
			n = g
		}
	}
	return &regex{bt: bt, ngrp: n}, nil
}

// match reports whether s matches; with groups it also returns the submatches (""
// for a group that did not take part). lower is s in ASCII lower case.
func (r *regex) match(s string, lower []byte, groups bool) (bool, []string, error) {
	for _, l := range r.lits {
		hay := s
		if l.fold {
			hay = bytesToString(lower)
		}
		if !strings.Contains(hay, l.s) {
			return false, nil, nil
		}
	}
	if r.re2 != nil {
		if !groups {
			return r.re2.MatchString(s), nil, nil
		}
		m := r.re2.FindStringSubmatch(s)
		if m == nil {
			return false, nil, nil
		}
		return true, m, nil
	}
	m, err := r.bt.FindStringMatch(s)
	if err != nil || m == nil {
		return false, nil, err
	}
	if !groups {
		return true, nil, nil
	}
	out := make([]string, r.ngrp+1)
	for i := range out {
		if g := m.GroupByNumber(i); g != nil && len(g.Captures) > 0 {
			out[i] = g.String()
		}
	}
	return true, out, nil
}

// requiredLiterals returns up to four of the longest ASCII literals that every match of
// pat contains (case-folded ones in lower case).
func requiredLiterals(pat string) []literal {
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return nil
	}
	var out []literal
	var visit func(r *syntax.Regexp)
	visit = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			s := string(r.Rune)
			for i := 0; i < len(s); i++ {
				if s[i] >= 0x80 {
					return
				}
			}
			f := r.Flags&syntax.FoldCase != 0
			if f {
				s = strings.ToLower(s)
			}
			out = append(out, literal{s: s, fold: f})
		case syntax.OpConcat:
			for _, s := range r.Sub {
				visit(s)
			}
		case syntax.OpCapture, syntax.OpPlus:
			visit(r.Sub[0])
		case syntax.OpRepeat:
			if r.Min >= 1 {
				visit(r.Sub[0])
			}
		}
	}
	visit(re)
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].s) > len(out[j].s) })
	if len(out) > 4 {
		out = out[:4]
	}
	return out
}

// breToERE rewrites a POSIX basic expression (regexp: table with the x flag) as an
// extended one: \( \) \{ \} \| \+ \? become operators, their bare forms literals.
func breToERE(p string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if inClass {
			b.WriteByte(c)
			if c == ']' {
				inClass = false
			}
			continue
		}
		switch {
		case c == '[':
			inClass = true
			b.WriteByte(c)
			if i+1 < len(p) && p[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
		case c == '\\' && i+1 < len(p):
			i++
			switch p[i] {
			case '(', ')', '{', '}', '|', '+', '?':
				b.WriteByte(p[i])
			default:
				b.WriteByte('\\')
				b.WriteByte(p[i])
			}
		case strings.IndexByte("(){}|+?", c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// gnuEscapes rewrites the GNU regex extensions glibc accepts in regexp: tables (\< \>
// \` \') into RE2 syntax.
func gnuEscapes(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	r := strings.NewReplacer(`\\`, `\\`, `\<`, `\b`, `\>`, `\b`, "\\`", `\A`, `\'`, `\z`)
	return r.Replace(p)
}

// utf8Escapes rewrites runs of \xHH escapes that spell UTF-8 sequences (\xE2\x80\xAE)
// as the code points they encode: Postfix's PCRE matches bytes, RE2 and regexp2 match
// code points, so the byte escapes would otherwise never match.
func utf8Escapes(p string) string {
	if !strings.Contains(p, `\x`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); {
		if p[i] == '\\' && i+1 < len(p) && p[i+1] != 'x' {
			b.WriteString(p[i : i+2])
			i += 2
			continue
		}
		var run []byte
		j := i
		for j+3 < len(p) && p[j] == '\\' && p[j+1] == 'x' && isHex(p[j+2]) && isHex(p[j+3]) {
			run = append(run, hexVal(p[j+2])<<4|hexVal(p[j+3]))
			j += 4
		}
		if len(run) > 1 && run[0] >= 0x80 && utf8.Valid(run) {
			for _, r := range string(run) {
				fmt.Fprintf(&b, `\x{%X}`, r)
			}
			i = j
			continue
		}
		if j > i {
			b.WriteString(p[i:j])
			i = j
			continue
		}
		b.WriteByte(p[i])
		i++
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// posixBrackets escapes backslashes inside bracket expressions: in POSIX "[\.]" matches
// a backslash or a dot, in RE2 only a dot.
func posixBrackets(p string) string {
	if !strings.Contains(p, "[") || !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '\\' && i+1 < len(p) {
			b.WriteByte(c)
			b.WriteByte(p[i+1])
			i++
			continue
		}
		if c != '[' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('[')
		j := i + 1
		if j < len(p) && p[j] == '^' {
			b.WriteByte('^')
			j++
		}
		if j < len(p) && p[j] == ']' {
			b.WriteByte(']')
			j++
		}
		for ; j < len(p) && p[j] != ']'; j++ {
			switch {
			case p[j] == '[' && j+1 < len(p) && (p[j+1] == ':' || p[j+1] == '.' || p[j+1] == '='):
				// [:class:], [.coll.], [=equiv=] are copied whole.
				end := strings.Index(p[j+2:], string(p[j+1])+"]")
				if end < 0 {
					b.WriteString(p[j:])
					return b.String()
				}
				b.WriteString(p[j : j+2+end+2])
				j += 2 + end + 1
			case p[j] == '\\':
				b.WriteString(`\\`)
			default:
				b.WriteByte(p[j])
			}
		}
		if j < len(p) {
			b.WriteByte(']')
		}
		i = j
	}
	return b.String()
}
