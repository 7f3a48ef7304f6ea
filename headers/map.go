package headers

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Map is a loaded Postfix regexp: or pcre: table.
type Map struct {
	// Name is the file the map was loaded from (or the name given to ParseMap).
	Name   string
	Syntax Syntax
	rules  []rule
}

// Rule kinds.
const (
	ruleMatch = iota
	ruleIf
	ruleEndif
)

type rule struct {
	kind    int
	line    int
	negate  bool
	re      *regex
	pattern string // as written, with delimiters and flags
	result  []segment
	groups  bool // result refers to groups
	end     int  // for ruleIf: index of the matching endif
}

// segment is a piece of a result template: literal text or a group reference.
type segment struct {
	lit   string
	group int // -1 for literal
}

// Hit is a table entry that matched.
type Hit struct {
	Map     *Map
	Line    int    // line of the entry in the file
	Pattern string // the entry's pattern as written
	Result  string // the result with $n substituted
}

// Where returns "file:line" of the entry.
func (h Hit) Where() string { return h.Map.Name + ":" + strconv.Itoa(h.Line) }

// Rules returns the number of match entries (not counting if/endif).
func (m *Map) Rules() int {
	n := 0
	for _, r := range m.rules {
		if r.kind == ruleMatch {
			n++
		}
	}
	return n
}

// LoadMap loads a table file. The syntax comes from a "pcre:" or "regexp:" prefix of path,
// else from its extension (.regexp or .re for regexp, anything else pcre).
func LoadMap(path string) (*Map, error) {
	return LoadMapTimeout(path, DefaultMatchTimeout)
}

// LoadMapTimeout is LoadMap with the match timeout of backtracking patterns.
func LoadMapTimeout(path string, timeout time.Duration) (*Map, error) {
	syn := PCRE
	switch {
	case strings.HasPrefix(path, "pcre:"):
		path = strings.TrimPrefix(path, "pcre:")
	case strings.HasPrefix(path, "regexp:"):
		path, syn = strings.TrimPrefix(path, "regexp:"), Regexp
	case strings.HasSuffix(path, ".regexp") || strings.HasSuffix(path, ".re"):
		syn = Regexp
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	defer f.Close()
	return ParseMap(path, f, syn, timeout)
}

// maxMapBytes bounds a table file.
const maxMapBytes = 16 << 20

// ParseMap parses a table from r; name is used in errors and hits.
func ParseMap(name string, r io.Reader, syn Syntax, timeout time.Duration) (*Map, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxMapBytes+1))
	if err != nil {
		return nil, fmt.Errorf("headers: reading %s: %w", name, err)
	}
	if len(data) > maxMapBytes {
		return nil, fmt.Errorf("headers: %s: larger than %d bytes", name, maxMapBytes)
	}
	m := &Map{Name: name, Syntax: syn}
	var stack []int
	for _, ll := range logicalLines(data) {
		errf := func(format string, a ...any) error {
			return &LoadError{File: name, Line: ll.line, Msg: fmt.Sprintf(format, a...)}
		}
		s := ll.text
		if kw, rest, ok := keyword(s); ok {
			if kw == "endif" {
				if strings.TrimSpace(rest) != "" {
					return nil, errf("extra text after ENDIF")
				}
				if len(stack) == 0 {
					return nil, errf("ENDIF without matching IF")
				}
				m.rules[stack[len(stack)-1]].end = len(m.rules)
				stack = stack[:len(stack)-1]
				m.rules = append(m.rules, rule{kind: ruleEndif, line: ll.line})
				continue
			}
			ru, tail, err := parsePattern(strings.TrimLeft(rest, " \t"), syn, timeout)
			if err != nil {
				return nil, errf("%v", err)
			}
			if tail != "" {
				return nil, errf("extra text after IF pattern: %q", tail)
			}
			ru.kind, ru.line = ruleIf, ll.line
			stack = append(stack, len(m.rules))
			m.rules = append(m.rules, ru)
			if len(stack) > 100 {
				return nil, errf("IF nested too deeply")
			}
			continue
		}
		ru, result, err := parsePattern(s, syn, timeout)
		if err != nil {
			return nil, errf("%v", err)
		}
		if result == "" {
			return nil, errf("no result after the pattern")
		}
		ru.kind, ru.line = ruleMatch, ll.line
		ru.result, ru.groups, err = parseResult(result, ru.re.ngrp)
		if err != nil {
			return nil, errf("%v", err)
		}
		if ru.negate && ru.groups {
			return nil, errf("$number substitution in the result of a negated pattern")
		}
		m.rules = append(m.rules, ru)
	}
	if len(stack) > 0 {
		return nil, &LoadError{File: name, Line: m.rules[stack[len(stack)-1]].line, Msg: "IF has no matching ENDIF"}
	}
	return m, nil
}

type logicalLine struct {
	line int
	text string
}

// logicalLines joins a table's physical lines as Postfix's readllines does: empty lines
// and lines whose first non-blank character is "#" are skipped; a line starting with
// white space continues the previous one (joined as written, without the newline).
func logicalLines(data []byte) []logicalLine {
	var out []logicalLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxMapBytes)
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimRight(sc.Text(), "\r")
		t := strings.TrimLeft(l, " \t")
		if t == "" || t[0] == '#' {
			continue
		}
		if t != l && len(out) > 0 {
			out[len(out)-1].text += l
			continue
		}
		out = append(out, logicalLine{line: n, text: t})
	}
	for i := range out {
		out[i].text = strings.TrimRight(out[i].text, " \t")
	}
	return out
}

// keyword recognises "if" and "endif" (case-insensitive, not followed by a letter or
// digit).
func keyword(s string) (kw, rest string, ok bool) {
	for _, k := range []string{"endif", "if"} {
		if len(s) >= len(k) && strings.EqualFold(s[:len(k)], k) {
			if len(s) == len(k) {
				return k, "", true
			}
			c := s[len(k)]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return k, s[len(k):], true
			}
		}
	}
	return "", "", false
}

// parsePattern parses "[!]/pattern/flags" at the start of s and returns the rest,
// trimmed.
func parsePattern(s string, syn Syntax, timeout time.Duration) (rule, string, error) {
	var ru rule
	start := s
	if strings.HasPrefix(s, "!") {
		ru.negate = true
		s = strings.TrimLeft(s[1:], " \t")
	}
	if s == "" {
		return ru, "", fmt.Errorf("missing pattern")
	}
	delim := s[0]
	if delim == '\\' || delim == ' ' || delim == '\t' || delim >= 0x80 ||
		delim >= 'a' && delim <= 'z' || delim >= 'A' && delim <= 'Z' || delim >= '0' && delim <= '9' {
		return ru, "", fmt.Errorf("unrecognized request %q: a pattern starts with a delimiter such as /", clip(start))
	}
	i := 1
	for ; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			continue
		}
		if s[i] == delim {
			break
		}
	}
	if i >= len(s) {
		return ru, "", fmt.Errorf("no closing regexp delimiter %q", delim)
	}
	pat := s[1:i]
	j := i + 1
	for j < len(s) && s[j] != ' ' && s[j] != '\t' {
		j++
	}
	flags := s[i+1 : j]
	ru.pattern = start[:len(start)-len(s)] + s[:j]
	re, err := compileRegex(pat, flags, syn, timeout)
	if err != nil {
		return ru, "", err
	}
	ru.re = re
	return ru, strings.TrimSpace(s[j:]), nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// parseResult splits a result into literals and group references: $1, ${1}, $(1), $$.
func parseResult(s string, ngrp int) ([]segment, bool, error) {
	var segs []segment
	groups := false
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return nil, false, fmt.Errorf("bad replacement syntax: trailing $")
		}
		var num string
		switch s[i+1] {
		case '$':
			lit.WriteByte('$')
			i++
			continue
		case '{', '(':
			closer := byte('}')
			if s[i+1] == '(' {
				closer = ')'
			}
			k := strings.IndexByte(s[i+2:], closer)
			if k < 0 {
				return nil, false, fmt.Errorf("bad replacement syntax: unclosed %c", s[i+1])
			}
			num = s[i+2 : i+2+k]
			i += 2 + k
		default:
			k := i + 1
			for k < len(s) && s[k] >= '0' && s[k] <= '9' {
				k++
			}
			num = s[i+1 : k]
			if num == "" {
				e := k
				for e < len(s) && (s[e] >= 'a' && s[e] <= 'z' || s[e] >= 'A' && s[e] <= 'Z' || s[e] == '_') {
					e++
				}
				return nil, false, fmt.Errorf("non-numeric replacement index %q", s[i+1:e])
			}
			i = k - 1
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			return nil, false, fmt.Errorf("non-numeric replacement index %q", num)
		}
		if n > ngrp {
			return nil, false, fmt.Errorf("out of range replacement index %q", num)
		}
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String(), group: -1})
			lit.Reset()
		}
		segs = append(segs, segment{group: n})
		groups = true
	}
	if lit.Len() > 0 {
		segs = append(segs, segment{lit: lit.String(), group: -1})
	}
	return segs, groups, nil
}

func expand(segs []segment, groups []string) string {
	if len(segs) == 1 && segs[0].group < 0 {
		return segs[0].lit
	}
	var b strings.Builder
	for _, s := range segs {
		if s.group < 0 {
			b.WriteString(s.lit)
		} else if s.group < len(groups) {
			b.WriteString(groups[s.group])
		}
	}
	return b.String()
}

// Lookup returns the first entry matching s, as Postfix's table lookup does. An error
// (a backtracking pattern that timed out) skips that entry and is returned with the
// result of the lookup.
func (m *Map) Lookup(s string) (Hit, bool, error) {
	return m.lookup(s, nil, nil)
}

// lookup is Lookup with a scratch buffer for the lower-case copy of s and a set of
// entries to skip (those that timed out earlier in the same message); entries that fail
// are added to it.
func (m *Map) lookup(s string, scratch *[]byte, skip map[*rule]bool) (Hit, bool, error) {
	var buf []byte
	if scratch != nil {
		buf = (*scratch)[:0]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	if scratch != nil {
		*scratch = buf
	}
	var firstErr error
	for i := 0; i < len(m.rules); i++ {
		r := &m.rules[i]
		switch r.kind {
		case ruleEndif:
			continue
		case ruleIf:
			if skip[r] {
				i = r.end
				continue
			}
			ok, _, err := r.re.match(s, buf, false)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("headers: %s:%d: %w", m.Name, r.line, err)
				}
				if skip != nil {
					skip[r] = true
				}
			}
			if ok == r.negate {
				i = r.end
			}
			continue
		}
		if skip[r] {
			continue
		}
		ok, g, err := r.re.match(s, buf, r.groups && !r.negate)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("headers: %s:%d: %w", m.Name, r.line, err)
			}
			if skip != nil {
				skip[r] = true
			}
			continue
		}
		if ok != r.negate {
			return Hit{Map: m, Line: r.line, Pattern: r.pattern, Result: expand(r.result, g)}, true, firstErr
		}
	}
	return Hit{}, false, firstErr
}

// CheckResults calls check with the result of every entry that has no $n substitution (a
// substituted result is known only at match time) and returns the first error as a
// LoadError naming the file and line. Other table users (access maps) validate their own
// actions with it.
func (m *Map) CheckResults(check func(result string) error) error {
	for _, r := range m.rules {
		if r.kind != ruleMatch || r.groups {
			continue
		}
		if err := check(expand(r.result, nil)); err != nil {
			return &LoadError{File: m.Name, Line: r.line, Msg: err.Error()}
		}
	}
	return nil
}
