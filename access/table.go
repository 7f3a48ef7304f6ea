package access

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/headers"
)

// Limits on a table file, against a runaway or hostile file.
const (
	MaxTableBytes   = 64 << 20 // a table file
	MaxLineBytes    = 64 << 10 // a logical line, continuations included
	MaxTableEntries = 1 << 20  // entries of one table
)

// Type is the kind of a table file.
type Type string

// The table types. Fixed tables (TypeHash) are looked up for every key of Postfix's
// search order; pattern tables only for the full string (smtpd_check.c: PARTIAL lookups
// skip tables without DICT_FLAG_FIXED).
const (
	TypeHash   Type = "hash"   // "key value" lines: texthash:, hash:, btree:, lmdb:, cdb:
	TypeCIDR   Type = "cidr"   // cidr_table(5)
	TypeRegexp Type = "regexp" // regexp_table(5)
	TypePCRE   Type = "pcre"   // pcre_table(5)
)

// ParseSpec splits a Postfix table name ("cidr:/etc/postfix/clients") into its type and
// path. A name without a type is a plain key-value file.
func ParseSpec(spec string) (Type, string, error) {
	typ, path, ok := strings.Cut(spec, ":")
	if !ok {
		return TypeHash, spec, nil
	}
	switch strings.ToLower(typ) {
	case "texthash", "hash", "btree", "lmdb", "cdb", "dbm", "sdbm":
		return TypeHash, path, nil
	case "cidr":
		return TypeCIDR, path, nil
	case "regexp":
		return TypeRegexp, path, nil
	case "pcre":
		return TypePCRE, path, nil
	}
	return "", "", fmt.Errorf("access: table %q: unsupported type %q (want texthash, hash, cidr, regexp or pcre)", spec, typ)
}

// Entry is the table entry a lookup found.
type Entry struct {
	Key   string // the lookup key that matched (for pattern tables, the string looked up)
	Value string // the result, after $n substitution
	File  string
	Line  int
}

// table is one loaded file.
type table interface {
	// get looks key up. pattern tables match it against their patterns.
	get(key string) (Entry, bool, error)
	fixed() bool
}

// LoadError is an error in a table file, at a line.
type LoadError struct {
	File string
	Line int
	Msg  string
}

func (e *LoadError) Error() string { return fmt.Sprintf("access: %s:%d: %s", e.File, e.Line, e.Msg) }

// loadTable reads a table of type typ from path; validate checks each literal result.
func loadTable(typ Type, path string, matchTimeout time.Duration, validate func(string) error) (table, error) {
	switch typ {
	case TypeRegexp, TypePCRE:
		m, err := headers.LoadMapTimeout(string(typ)+":"+path, matchTimeout)
		if err != nil {
			return nil, fmt.Errorf("access: %w", err)
		}
		if err := m.CheckResults(validate); err != nil {
			return nil, fmt.Errorf("access: %w", err)
		}
		return &regexpTable{m: m}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	defer f.Close()
	if typ == TypeCIDR {
		return parseCIDR(f, path, validate)
	}
	return parseHash(f, path, validate)
}

// logicalLine is a table line with its continuations joined (postmap(1): a line that
// starts with white space continues the previous one; comments and blank lines end
// nothing).
type logicalLine struct {
	text string
	line int
}

func readLines(r io.Reader, name string, each func(logicalLine) error) error {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxTableBytes+1), 64<<10)
	var (
		cur     []byte
		curLine int
		lineNo  int
		total   int
		started bool
	)
	flush := func() error {
		if !started {
			return nil
		}
		started = false
		return each(logicalLine{text: string(cur), line: curLine})
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return &LoadError{File: name, Line: lineNo + 1, Msg: fmt.Sprintf("line longer than %d bytes", br.Size())}
		}
		if len(line) > 0 {
			lineNo++
			total += len(line)
			if total > MaxTableBytes {
				return &LoadError{File: name, Line: lineNo, Msg: fmt.Sprintf("table larger than %d bytes", MaxTableBytes)}
			}
			line = bytes.TrimRight(line, "\r\n")
			trimmed := bytes.TrimSpace(line)
			switch {
			case len(trimmed) == 0 || trimmed[0] == '#':
			case line[0] == ' ' || line[0] == '\t':
				if !started {
					return &LoadError{File: name, Line: lineNo, Msg: "continuation line without a preceding entry"}
				}
				if len(cur)+1+len(trimmed) > MaxLineBytes {
					return &LoadError{File: name, Line: curLine, Msg: fmt.Sprintf("entry longer than %d bytes", MaxLineBytes)}
				}
				cur = append(append(cur, ' '), trimmed...)
			default:
				if err := flush(); err != nil {
					return err
				}
				cur, curLine, started = append(cur[:0], trimmed...), lineNo, true
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("access: reading %s: %w", name, err)
		}
	}
	return flush()
}

func checkText(s string) error {
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }); i >= 0 {
		return fmt.Errorf("control character %q", s[i])
	}
	return nil
}

// hashTable is a "key value" file as postmap(1) reads it: the key ends at the first white
// space, the value is the rest of the line. Keys are folded to lower case (postmap without
// -f); a key given twice keeps its first value, as postmap does (it warns).
type hashTable struct {
	name string
	m    map[string]Entry
}

// parseHash parses a key-value table.
func parseHash(r io.Reader, name string, validate func(string) error) (*hashTable, error) {
	t := &hashTable{name: name, m: map[string]Entry{}}
	err := readLines(r, name, func(ll logicalLine) error {
		errf := func(format string, a ...any) error {
			return &LoadError{File: name, Line: ll.line, Msg: fmt.Sprintf(format, a...)}
		}
		if err := checkText(ll.text); err != nil {
			return errf("%v", err)
		}
		i := strings.IndexAny(ll.text, " \t")
		if i < 0 {
			return errf("key %q without a value", ll.text)
		}
		key, val := strings.ToLower(ll.text[:i]), strings.TrimSpace(ll.text[i+1:])
		if validate != nil {
			if err := validate(val); err != nil {
				return errf("key %q: %v", key, err)
			}
		}
		if _, dup := t.m[key]; dup {
			return nil
		}
		if len(t.m) >= MaxTableEntries {
			return errf("more than %d entries", MaxTableEntries)
		}
		t.m[key] = Entry{Key: key, Value: val, File: name, Line: ll.line}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *hashTable) fixed() bool { return true }

func (t *hashTable) get(key string) (Entry, bool, error) {
	e, ok := t.m[key]
	return e, ok, nil
}

// cidrTable is a cidr_table(5): "[!]network/prefix result" or "[!]address result" lines,
// tried in order, first match wins; "if [!]network/prefix" ... "endif" blocks nest.
type cidrTable struct {
	name  string
	rules []cidrRule
}

type cidrRule struct {
	prefix netip.Prefix
	negate bool
	isIf   bool
	end    int // for if: index after the matching endif
	value  string
	line   int
}

func parseCIDRPattern(s string) (netip.Prefix, bool, error) {
	neg := false
	if strings.HasPrefix(s, "!") {
		neg, s = true, strings.TrimLeft(s[1:], " \t")
	}
	addr, bits, hasBits := strings.Cut(s, "/")
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false, fmt.Errorf("bad address pattern %q", s)
	}
	if !hasBits {
		return netip.PrefixFrom(a, a.BitLen()), neg, nil
	}
	p, err := netip.ParsePrefix(a.String() + "/" + bits)
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("bad network pattern %q", s)
	}
	// cidr_table(5): a pattern with host bits set is an error (Postfix skips it with a
	// warning; refusing it keeps a typo from silently matching nothing).
	if p.Masked() != p {
		return netip.Prefix{}, false, fmt.Errorf("non-null host address bits in %q, perhaps you should use %s instead", s, p.Masked())
	}
	return p, neg, nil
}

func parseCIDR(r io.Reader, name string, validate func(string) error) (*cidrTable, error) {
	t := &cidrTable{name: name}
	var stack []int
	err := readLines(r, name, func(ll logicalLine) error {
		errf := func(format string, a ...any) error {
			return &LoadError{File: name, Line: ll.line, Msg: fmt.Sprintf(format, a...)}
		}
		if err := checkText(ll.text); err != nil {
			return errf("%v", err)
		}
		pat, rest, _ := strings.Cut(strings.ReplaceAll(ll.text, "\t", " "), " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToLower(pat) {
		case "endif":
			if rest != "" {
				return errf("extra text after ENDIF")
			}
			if len(stack) == 0 {
				return errf("ENDIF without matching IF")
			}
			t.rules[stack[len(stack)-1]].end = len(t.rules)
			stack = stack[:len(stack)-1]
			return nil
		case "if":
			p, neg, err := parseCIDRPattern(rest)
			if err != nil {
				return errf("%v", err)
			}
			stack = append(stack, len(t.rules))
			t.rules = append(t.rules, cidrRule{prefix: p, negate: neg, isIf: true, line: ll.line})
			return nil
		}
		if pat == "!" { // "! 10.0.0.0/8 REJECT"
			p2, rest2, _ := strings.Cut(rest, " ")
			pat, rest = "!"+p2, strings.TrimSpace(rest2)
		}
		p, neg, err := parseCIDRPattern(pat)
		if err != nil {
			return errf("%v", err)
		}
		if rest == "" {
			return errf("no result after the pattern %q", pat)
		}
		if validate != nil {
			if err := validate(rest); err != nil {
				return errf("%v", err)
			}
		}
		if len(t.rules) >= MaxTableEntries {
			return errf("more than %d entries", MaxTableEntries)
		}
		t.rules = append(t.rules, cidrRule{prefix: p, negate: neg, value: rest, line: ll.line})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(stack) > 0 {
		return nil, &LoadError{File: name, Line: t.rules[stack[len(stack)-1]].line, Msg: "IF has no matching ENDIF"}
	}
	return t, nil
}

func (t *cidrTable) fixed() bool { return false }

func (t *cidrTable) get(key string) (Entry, bool, error) {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(key, "["), "]"))
	if err != nil {
		return Entry{}, false, nil // not an address: cidr tables match nothing else
	}
	a = a.Unmap()
	for i := 0; i < len(t.rules); i++ {
		r := &t.rules[i]
		// cidr_match.c: an entry of the other address family never matches, negated or not.
		if r.prefix.Addr().BitLen() != a.BitLen() {
			if r.isIf {
				i = r.end - 1
			}
			continue
		}
		in := r.prefix.Contains(a)
		if r.isIf {
			if in == r.negate {
				i = r.end - 1
			}
			continue
		}
		if in != r.negate {
			return Entry{Key: key, Value: r.value, File: t.name, Line: r.line}, true, nil
		}
	}
	return Entry{}, false, nil
}

// regexpTable is a regexp: or pcre: table through the engine of package headers.
type regexpTable struct{ m *headers.Map }

func (t *regexpTable) fixed() bool { return false }

func (t *regexpTable) get(key string) (Entry, bool, error) {
	h, ok, err := t.m.Lookup(key)
	if !ok {
		return Entry{}, false, err
	}
	return Entry{Key: key, Value: h.Result, File: t.m.Name, Line: h.Line}, true, err
}
