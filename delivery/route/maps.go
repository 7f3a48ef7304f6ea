package route

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits on map files, against a runaway or hostile file.
const (
	MaxMapBytes   = 64 << 20 // a map file
	MaxLineBytes  = 64 << 10 // a logical line, continuations included
	MaxMapEntries = 1 << 20  // keys in one map
	MaxValues     = 1000     // values of one key
)

// Syntax is the flavour of a map file.
type Syntax int

const (
	// Table is postmap(1) syntax: "key value", the key ending at the first white space,
	// the rest of the line being the value (virtual(5), canonical(5), transport(5)).
	Table Syntax = iota
	// Aliases is aliases(5) syntax: "name: value, value", the name ending at the colon.
	Aliases
)

// Entry is one key of a map with its values, as written (values split on commas and
// white space for lists).
type Entry struct {
	Key    string
	Values []string
	Line   int
}

// ParseError is a syntax error in a map file.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	f := e.File
	if f == "" {
		f = "map"
	}
	return fmt.Sprintf("%s:%d: %s", f, e.Line, e.Msg)
}

// Parse reads a map in the given syntax. Lines whose first non-blank character is # are
// comments; a line that starts with white space continues the previous one (postmap(1),
// aliases(5)); keys are folded to lower case; a key given twice is an error, as postmap
// warns and keeps the first. Values are split on commas and white space; double quotes
// keep them together ("a b"@example.org). name is used in errors.
func Parse(r io.Reader, syntax Syntax, name string) ([]Entry, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxMapBytes+1), 64<<10)
	var (
		out     []Entry
		seen    = map[string]bool{}
		cur     []byte
		curLine int
		lineNo  int
		total   int
	)
	perr := func(line int, format string, a ...any) error {
		return &ParseError{File: name, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	flush := func() error {
		if cur == nil {
			return nil
		}
		e, err := parseEntry(cur, syntax)
		cur = nil
		if err != nil {
			return perr(curLine, "%v", err)
		}
		if seen[e.Key] {
			return perr(curLine, "duplicate key %q", e.Key)
		}
		if len(out) >= MaxMapEntries {
			return perr(curLine, "more than %d entries", MaxMapEntries)
		}
		seen[e.Key] = true
		e.Line = curLine
		out = append(out, e)
		return nil
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, perr(lineNo+1, "line longer than %d bytes", br.Size())
		}
		if len(line) > 0 {
			lineNo++
			total += len(line)
			if total > MaxMapBytes {
				return nil, perr(lineNo, "map larger than %d bytes", MaxMapBytes)
			}
			line = bytes.TrimRight(line, "\r\n")
			trimmed := bytes.TrimSpace(line)
			switch {
			case len(trimmed) == 0 || trimmed[0] == '#':
				// Blank lines and comments end nothing: postmap joins a continuation
				// across them.
			case line[0] == ' ' || line[0] == '\t':
				if cur == nil {
					return nil, perr(lineNo, "continuation line without a preceding entry")
				}
				if len(cur)+1+len(trimmed) > MaxLineBytes {
					return nil, perr(curLine, "entry longer than %d bytes", MaxLineBytes)
				}
				cur = append(append(cur, ' '), trimmed...)
			default:
				if err := flush(); err != nil {
					return nil, err
				}
				cur, curLine = append([]byte(nil), trimmed...), lineNo
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("route: reading %s: %w", name, err)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseEntry(line []byte, syntax Syntax) (Entry, error) {
	if bytes.IndexByte(line, 0) >= 0 {
		return Entry{}, errors.New("NUL byte")
	}
	if i := bytes.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }); i >= 0 {
		return Entry{}, fmt.Errorf("control character %q", line[i])
	}
	var key, rest string
	s := string(line)
	if syntax == Aliases {
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return Entry{}, errors.New("alias without a colon (name: value, ...)")
		}
		if strings.HasPrefix(k, "\"") { // "quoted name": value
			end := strings.Index(s[1:], "\"")
			if end < 0 {
				return Entry{}, errors.New("unterminated quote in alias name")
			}
			k = s[1 : end+1]
			v, ok = strings.CutPrefix(strings.TrimLeft(s[end+2:], " \t"), ":")
			if !ok {
				return Entry{}, errors.New("alias without a colon (name: value, ...)")
			}
		}
		key, rest = strings.TrimSpace(k), v
	} else {
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return Entry{}, fmt.Errorf("key %q without a value", s)
		}
		key, rest = s[:i], s[i+1:]
	}
	key = strings.ToLower(key)
	if key == "" || (syntax == Table && strings.ContainsAny(key, " \t")) {
		return Entry{}, fmt.Errorf("bad key %q", key)
	}
	vals, err := splitValues(rest)
	if err != nil {
		return Entry{}, fmt.Errorf("key %q: %w", key, err)
	}
	if len(vals) == 0 {
		return Entry{}, fmt.Errorf("key %q without a value", key)
	}
	if len(vals) > MaxValues {
		return Entry{}, fmt.Errorf("key %q has more than %d values", key, MaxValues)
	}
	return Entry{Key: key, Values: vals}, nil
}

// splitValues splits on commas and white space outside double quotes.
func splitValues(s string) ([]string, error) {
	var out []string
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			b.WriteByte(c)
		case c == '\\' && inQuote && i+1 < len(s):
			b.WriteByte(c)
			i++
			b.WriteByte(s[i])
		case !inQuote && (c == ',' || c == ' ' || c == '\t'):
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteByte(c)
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote")
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out, nil
}

// fileMap is a map file loaded in memory, reloaded when the file changes.
type fileMap struct {
	path   string
	syntax Syntax
	check  time.Duration
	log    *slog.Logger
	check1 func(Entry) error // validates an entry at load

	data      atomic.Pointer[mapData]
	mu        sync.Mutex // one reload at a time
	lastCheck atomic.Int64
}

type mapData struct {
	m     map[string][]string
	mtime time.Time
	size  int64
}

func newFileMap(path string, syntax Syntax, check time.Duration, log *slog.Logger, validate func(Entry) error) *fileMap {
	return &fileMap{path: strings.TrimPrefix(strings.TrimPrefix(path, "texthash:"), "hash:"), syntax: syntax, check: check, log: log, check1: validate}
}

// load reads the file when it changed since the last load (or always when force). A
// file that fails to parse leaves the previous contents in place.
func (f *fileMap) load(force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("route: map %s: %w", f.path, err)
	}
	old := f.data.Load()
	if !force && old != nil && fi.ModTime().Equal(old.mtime) && fi.Size() == old.size {
		return nil
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("route: map %s: %w", f.path, err)
	}
	defer fh.Close()
	entries, err := Parse(fh, f.syntax, f.path)
	if err == nil && f.check1 != nil {
		for _, e := range entries {
			if err = f.check1(e); err != nil {
				err = &ParseError{File: f.path, Line: e.Line, Msg: err.Error()}
				break
			}
		}
	}
	if err != nil {
		if old != nil {
			f.log.Error("route: map not reloaded; keeping the previous contents", "map", f.path, "err", err)
		}
		return fmt.Errorf("route: %w", err)
	}
	m := make(map[string][]string, len(entries))
	for _, e := range entries {
		m[e.Key] = e.Values
	}
	f.data.Store(&mapData{m: m, mtime: fi.ModTime(), size: fi.Size()})
	if old != nil {
		f.log.Info("route: map reloaded", "map", f.path, "entries", len(m))
	}
	return nil
}

// get looks key up, first checking (at most every f.check) whether the file changed.
func (f *fileMap) get(key string) ([]string, bool) {
	now := time.Now().UnixNano()
	if last := f.lastCheck.Load(); now-last >= int64(f.check) && f.lastCheck.CompareAndSwap(last, now) {
		if err := f.load(false); err != nil && f.data.Load() != nil {
			f.log.Warn("route: map check failed", "map", f.path, "err", err)
		}
	}
	d := f.data.Load()
	if d == nil {
		return nil, false
	}
	v, ok := d.m[key]
	return v, ok
}
