package sieve

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// srcPos is a position in a script: 1-based line and column (in bytes).
type srcPos struct{ Line, Col int }

func (p srcPos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tTag
	tNumber
	tString
	tPunct
	tBad // characters that start no token (already reported)
)

type token struct {
	kind tokKind
	pos  srcPos
	text string // identifier/tag name (without ':'), string value, punctuation
	num  int64
	// multiline marks a text: string (RFC 5228 §2.4.2); variables still expand in it.
	multiline bool
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of script"
	case tIdent:
		return "identifier '" + t.text + "'"
	case tTag:
		return "tag ':" + t.text + "'"
	case tNumber:
		return "number " + strconv.FormatInt(t.num, 10)
	case tString:
		return "string"
	case tBad:
		return "invalid characters '" + t.text + "'"
	}
	return "'" + t.text + "'"
}

// lexer splits a script into tokens (RFC 5228 §8.1).
type lexer struct {
	src       []byte
	off       int
	line, col int
	maxString int
	// errs collects the errors the lexer recovers from (a number too large, an
	// identifier too long, stray characters); the parser reports them with its own.
	errs *ErrorList
}

// maxIdentifier bounds identifiers and tag names (Pigeonhole's SIEVE_MAX_IDENTIFIER_LEN).
const maxIdentifier = 32

// soft records an error the lexer goes on after.
func (l *lexer) soft(p srcPos, format string, args ...any) {
	if l.errs != nil {
		*l.errs = append(*l.errs, l.errf(p, format, args...))
	}
}

func (l *lexer) pos() srcPos { return srcPos{l.line, l.col} }

func (l *lexer) advance(n int) {
	for i := 0; i < n && l.off < len(l.src); i++ {
		if l.src[l.off] == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
		l.off++
	}
}

func (l *lexer) errf(p srcPos, format string, args ...any) *CompileError {
	return &CompileError{Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)}
}

// skip passes white space and comments.
func (l *lexer) skip() *CompileError {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.advance(1)
		case c == '#':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance(1)
			}
		case c == '/' && l.off+1 < len(l.src) && l.src[l.off+1] == '*':
			p := l.pos()
			end := strings.Index(string(l.src[l.off+2:]), "*/")
			if end < 0 {
				return l.errf(p, "unterminated comment")
			}
			l.advance(end + 4)
		default:
			return nil
		}
	}
	return nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (l *lexer) next() (token, *CompileError) {
	if err := l.skip(); err != nil {
		return token{}, err
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: p}, nil
	}
	c := l.src[l.off]
	switch {
	case isAlpha(c):
		s := l.off
		for l.off < len(l.src) && (isAlpha(l.src[l.off]) || isDigit(l.src[l.off])) {
			l.advance(1)
		}
		id := string(l.src[s:l.off])
		if id == "text" && l.off < len(l.src) && l.src[l.off] == ':' {
			l.advance(1)
			return l.multiline(p)
		}
		if len(id) > maxIdentifier {
			l.soft(p, "identifier '%s...' is longer than %d characters", id[:maxIdentifier], maxIdentifier)
			id = id[:maxIdentifier]
		}
		return token{kind: tIdent, pos: p, text: id}, nil
	case c == ':':
		l.advance(1)
		s := l.off
		if l.off >= len(l.src) || !isAlpha(l.src[l.off]) {
			return token{}, l.errf(p, "expected a tag name after ':'")
		}
		for l.off < len(l.src) && (isAlpha(l.src[l.off]) || isDigit(l.src[l.off])) {
			l.advance(1)
		}
		tag := string(l.src[s:l.off])
		if len(tag) > maxIdentifier {
			l.soft(p, "tag ':%s...' is longer than %d characters", tag[:maxIdentifier], maxIdentifier)
			tag = tag[:maxIdentifier]
		}
		return token{kind: tTag, pos: p, text: tag}, nil
	case isDigit(c):
		s := l.off
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.advance(1)
		}
		// Numbers are unsigned 64-bit, quantifier included (as in Pigeonhole).
		n, err := strconv.ParseUint(string(l.src[s:l.off]), 10, 64)
		tooLarge := err != nil
		mult := uint64(1)
		if l.off < len(l.src) {
			switch l.src[l.off] {
			case 'K', 'k':
				mult = 1 << 10
			case 'M', 'm':
				mult = 1 << 20
			case 'G', 'g':
				mult = 1 << 30
			}
			if mult != 1 {
				l.advance(1)
			}
		}
		if tooLarge || n > math.MaxUint64/mult {
			l.soft(p, "number %s is too large", l.src[s:l.off])
			if l.errs == nil {
				return token{}, l.errf(p, "number %s is too large", l.src[s:l.off])
			}
			n, mult = math.MaxInt64, 1
		}
		// Kept as int64: larger values are beyond any size or period anyway.
		return token{kind: tNumber, pos: p, num: int64(min(n*mult, math.MaxInt64))}, nil
	case c == '"':
		return l.quoted(p)
	case strings.IndexByte("[](){},;", c) >= 0:
		l.advance(1)
		return token{kind: tPunct, pos: p, text: string(c)}, nil
	}
	if l.errs == nil {
		return token{}, l.errf(p, "unexpected character %q", rune(c))
	}
	// Stray characters: one error for the run of them, and a token the parser
	// rejects.
	s := l.off
	for l.off < len(l.src) && !isAlpha(l.src[l.off]) && !isDigit(l.src[l.off]) &&
		strings.IndexByte("[](){},;:\" \t\r\n#/", l.src[l.off]) < 0 {
		l.advance(1)
	}
	if l.off == s {
		l.advance(1)
	}
	l.soft(p, "unexpected character(s) '%s'", l.src[s:l.off])
	return token{kind: tBad, pos: p, text: string(l.src[s:l.off])}, nil
}

// quoted reads a quoted string: \" and \\ escape, any other \x stands for x (§2.4.2).
func (l *lexer) quoted(p srcPos) (token, *CompileError) {
	l.advance(1)
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return token{}, l.errf(p, "unterminated string")
		}
		c := l.src[l.off]
		switch c {
		case '"':
			l.advance(1)
			return token{kind: tString, pos: p, text: b.String()}, nil
		case '\\':
			if l.off+1 >= len(l.src) {
				return token{}, l.errf(p, "unterminated string")
			}
			b.WriteByte(l.src[l.off+1])
			l.advance(2)
		case '\r', '\n':
			// A line break inside a quoted string is CRLF whatever the file has.
			if c == '\r' && l.off+1 < len(l.src) && l.src[l.off+1] == '\n' {
				l.advance(1)
			}
			b.WriteString("\r\n")
			l.advance(1)
		default:
			b.WriteByte(c)
			l.advance(1)
		}
		if l.maxString > 0 && b.Len() > l.maxString {
			return token{}, l.errf(p, "string exceeds %d bytes", l.maxString)
		}
	}
}

// multiline reads "text:" up to a line holding only "." (§2.4.2), undoing dot-stuffing.
func (l *lexer) multiline(p srcPos) (token, *CompileError) {
	// Rest of the "text:" line: white space and an optional hash comment.
	for l.off < len(l.src) && (l.src[l.off] == ' ' || l.src[l.off] == '\t') {
		l.advance(1)
	}
	if l.off < len(l.src) && l.src[l.off] == '#' {
		for l.off < len(l.src) && l.src[l.off] != '\n' {
			l.advance(1)
		}
	}
	if l.off < len(l.src) && l.src[l.off] == '\r' {
		l.advance(1)
	}
	if l.off >= len(l.src) || l.src[l.off] != '\n' {
		return token{}, l.errf(p, "expected a line break after 'text:'")
	}
	l.advance(1)
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return token{}, l.errf(p, "unterminated multi-line string (missing '.' line)")
		}
		end := l.off
		for end < len(l.src) && l.src[end] != '\n' {
			end++
		}
		line := l.src[l.off:end]
		nl := end < len(l.src)
		if s := strings.TrimSuffix(string(line), "\r"); s == "." {
			l.advance(end - l.off)
			if nl {
				l.advance(1)
			}
			return token{kind: tString, pos: p, text: b.String(), multiline: true}, nil
		}
		// Dot-stuffing: ".." at a line start stands for "." (Pigeonhole keeps a single
		// leading dot as written). Lines end with CRLF, as mail does (§2.4.2).
		line = []byte(strings.TrimSuffix(string(line), "\r"))
		if len(line) > 1 && line[0] == '.' && line[1] == '.' {
			line = line[1:]
		}
		b.Write(line)
		if nl {
			b.WriteString("\r\n")
		}
		l.advance(end - l.off)
		if nl {
			l.advance(1)
		} else {
			return token{}, l.errf(p, "unterminated multi-line string (missing '.' line)")
		}
		if l.maxString > 0 && b.Len() > l.maxString {
			return token{}, l.errf(p, "string exceeds %d bytes", l.maxString)
		}
	}
}
