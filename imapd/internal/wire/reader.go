package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits bound what one command may make the server read and hold. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	// MaxLine is the length of one line of a command, between literals (RFC 9051 §4
	// leaves it to the server; RFC 7162 §4 asks for at least 8192 octets).
	MaxLine int
	// MaxStringLiteral is the largest literal read as a string argument (a password, a
	// search string, a mailbox name).
	MaxStringLiteral int64
	// MaxStrings is the total of the string literals of one command.
	MaxStrings int64
	// MaxMessage is the largest APPEND message; beyond it APPEND is NO [TOOBIG] before
	// the client sends it (RFC 7889).
	MaxMessage int64
	// MaxSkip is the most of a non-synchronising literal ({N+}) the parser discards after
	// a command it refused; a larger one closes the connection.
	MaxSkip int64
	// MaxDepth bounds the nesting of parenthesised lists and search keys (NOT, OR).
	MaxDepth int
	// MaxItems bounds the items of one list (flags, fetch attributes, patterns, search
	// keys of one level, ID parameters) and the ranges of one sequence set.
	MaxItems int
}

// DefaultLimits are the limits used for zero fields.
var DefaultLimits = Limits{
	MaxLine:          64 << 10,
	MaxStringLiteral: 64 << 10,
	MaxStrings:       1 << 20,
	MaxMessage:       50 << 20,
	MaxSkip:          64 << 10,
	MaxDepth:         32,
	MaxItems:         10000,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxLine > 0 {
		d.MaxLine = l.MaxLine
	}
	if l.MaxStringLiteral > 0 {
		d.MaxStringLiteral = l.MaxStringLiteral
	}
	if l.MaxStrings > 0 {
		d.MaxStrings = l.MaxStrings
	}
	if l.MaxMessage > 0 {
		d.MaxMessage = l.MaxMessage
	}
	if l.MaxSkip > 0 {
		d.MaxSkip = l.MaxSkip
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxItems > 0 {
		d.MaxItems = l.MaxItems
	}
	return d
}

// Kind is the status a refused command is answered with.
type Kind int

// Kinds of Error.
const (
	Bad Kind = iota // malformed: tagged BAD (RFC 9051 §7.1.5)
	No              // well-formed but refused: tagged NO (a message over the size limit)
)

// Error is a command the parser refused. The session answers it with the command's tag
// (or "*" when the tag was not read) and goes on, unless Fatal.
type Error struct {
	Kind Kind
	Code string // response code without brackets (RFC 5530), or ""
	Text string
	// Fatal says the stream cannot be resynchronised: answer BYE and close.
	Fatal bool
}

func (e *Error) Error() string {
	k := "BAD"
	if e.Kind == No {
		k = "NO"
	}
	if e.Code != "" {
		return fmt.Sprintf("%s [%s] %s", k, e.Code, e.Text)
	}
	return k + " " + e.Text
}

func bad(format string, args ...any) *Error {
	return &Error{Kind: Bad, Text: fmt.Sprintf(format, args...)}
}

// ErrIO wraps a read error of the connection (EOF, timeout): no response can follow.
var ErrIO = errors.New("wire: connection read failed")

// Parser reads commands from a connection. It is not safe for concurrent use.
type Parser struct {
	r    *bufio.Reader
	lim  Limits
	cont func(text string) error

	line    []byte // the current line of the command, without CRLF
	pos     int
	strings int64 // bytes of string literals read for this command
	depth   int
	// pending is a message literal handed to the caller (APPEND) not yet read to its end.
	pending *io.LimitedReader
	// authed allows the long literals of the authenticated state (APPEND messages).
	authed bool
	// state of the current command, for the APPEND continuation (MULTIAPPEND)
	cmd *Command
}

// NewParser reads commands from r. cont sends a continuation request ("+ text\r\n") and
// flushes it: the parser calls it before reading a synchronising literal.
func NewParser(r *bufio.Reader, lim Limits, cont func(text string) error) *Parser {
	return &Parser{r: r, lim: lim.withDefaults(), cont: cont}
}

// SetAuthenticated allows the commands' message literals (APPEND): before login a
// literal is never larger than MaxStringLiteral (RFC 7888 §4: servers should limit
// literals before authentication).
func (p *Parser) SetAuthenticated(v bool) { p.authed = v }

// readLine reads the next line of the command into p.line.
func (p *Parser) readLine() error {
	p.line = p.line[:0]
	p.pos = 0
	for {
		frag, err := p.r.ReadSlice('\n')
		p.line = append(p.line, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(p.line) > p.lim.MaxLine {
				return p.discardLongLine()
			}
			continue
		}
		return fmt.Errorf("%w: %w", ErrIO, err)
	}
	p.line = bytes.TrimSuffix(p.line[:len(p.line)-1], []byte("\r"))
	if len(p.line) > p.lim.MaxLine {
		p.cutLine(p.line)
		return &Error{Kind: Bad, Code: "TOOBIG", Text: "command line too long"}
	}
	return nil
}

// lineTail is how much of the end of an over-long line is kept: enough for a literal's
// announcement ({N+} with N up to 19 digits).
const lineTail = 24

// cutLine keeps of an over-long line its start, the tag for the answer, and its end
// (tail, without CRLF): a non-synchronising literal it announces comes anyway, and
// skipRest must skip it rather than read its octets as commands. A NUL joins them: it
// makes neither a tag nor a literal's size of the two.
func (p *Parser) cutLine(tail []byte) {
	head := p.line[:min(len(p.line), 64)]
	tail = tail[len(tail)-min(len(tail), lineTail):]
	line := make([]byte, 0, len(head)+1+len(tail))
	line = append(append(append(line, head...), 0), tail...)
	p.line, p.pos = line, len(line)
}

// discardLongLine reads to the end of an over-long line, up to 16 times MaxLine; a line
// longer than that is fatal (a client that never ends its line).
func (p *Parser) discardLongLine() error {
	n := len(p.line)
	tail := bytes.Clone(p.line[len(p.line)-min(len(p.line), lineTail+2):])
	for n < 16*p.lim.MaxLine {
		frag, err := p.r.ReadSlice('\n')
		n += len(frag)
		tail = append(tail, frag[len(frag)-min(len(frag), lineTail+2):]...)
		tail = tail[len(tail)-min(len(tail), lineTail+2):]
		if err == nil {
			p.cutLine(bytes.TrimSuffix(bytes.TrimSuffix(tail, []byte("\n")), []byte("\r")))
			return &Error{Kind: Bad, Code: "TOOBIG", Text: "command line too long"}
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			p.cutLine(nil)
			return fmt.Errorf("%w: %w", ErrIO, err)
		}
	}
	p.cutLine(nil)
	return &Error{Kind: Bad, Code: "TOOBIG", Text: "command line too long", Fatal: true}
}

// skipRest discards what is left of a refused command: the rest of the line and, while
// the line ends with a non-synchronising literal, that literal and the next line. A
// synchronising literal was not asked for (no continuation was sent), so the client does
// not send it (RFC 9051 §4.3).
func (p *Parser) skipRest() error {
	for {
		// The whole line: the command may have failed inside the literal's announcement.
		n, plus, ok := literalAtEnd(p.line)
		if !ok && (bytes.HasSuffix(p.line, []byte("+}")) || bytes.HasSuffix(p.line, []byte("-}"))) {
			return &Error{Kind: Bad, Text: "malformed literal", Fatal: true}
		}
		if !ok || !plus {
			p.pos = len(p.line)
			return nil
		}
		if n > p.lim.MaxSkip {
			return &Error{Kind: Bad, Code: "TOOBIG", Text: "literal too big", Fatal: true}
		}
		if _, err := io.CopyN(io.Discard, p.r, n); err != nil {
			return fmt.Errorf("%w: %w", ErrIO, err)
		}
		if err := p.readLine(); err != nil {
			var e *Error
			if errors.As(err, &e) && !e.Fatal {
				continue // an over-long line: discarded already
			}
			return err
		}
	}
}

// literalAtEnd reports whether b ends with a literal announcement {N} or {N+} / {N-}.
func literalAtEnd(b []byte) (n int64, plus, ok bool) {
	if len(b) < 3 || b[len(b)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(b, '{')
	if i < 0 {
		return 0, false, false
	}
	num := b[i+1 : len(b)-1]
	if len(num) > 0 && (num[len(num)-1] == '+' || num[len(num)-1] == '-') {
		plus = true
		num = num[:len(num)-1]
	}
	if len(num) == 0 || len(num) > 19 {
		return 0, false, false
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || v < 0 {
		return 0, false, false
	}
	return v, plus, true
}

// --- tokens ---

func (p *Parser) eol() bool { return p.pos >= len(p.line) }

func (p *Parser) peek() byte {
	if p.eol() {
		return 0
	}
	return p.line[p.pos]
}

func (p *Parser) sp() error {
	if p.peek() != ' ' {
		return p.expected("SP")
	}
	p.pos++
	return nil
}

// maybeSP consumes a space if there is one.
func (p *Parser) maybeSP() bool {
	if p.peek() == ' ' {
		p.pos++
		return true
	}
	return false
}

func (p *Parser) expect(c byte) error {
	if p.peek() != c {
		return p.expected(strconv.QuoteRune(rune(c)))
	}
	p.pos++
	return nil
}

func (p *Parser) end() error {
	if !p.eol() {
		return bad("unexpected %q at the end of the command", trunc(p.line[p.pos:]))
	}
	return nil
}

func (p *Parser) expected(what string) error {
	if p.eol() {
		return bad("expected %s at the end of the line", what)
	}
	return bad("expected %s at %q", what, trunc(p.line[p.pos:]))
}

func trunc(b []byte) string {
	if len(b) > 30 {
		return string(b[:30]) + "..."
	}
	return string(b)
}

// isAtomChar: ATOM-CHAR, any CHAR except atom-specials (RFC 9051 §9).
func isAtomChar(c byte) bool {
	if c <= 0x1f || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAstringChar: ASTRING-CHAR = ATOM-CHAR / resp-specials ("]").
func isAstringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// isListChar: list-char = ATOM-CHAR / list-wildcards / resp-specials.
func isListChar(c byte) bool { return isAstringChar(c) || c == '%' || c == '*' }

func (p *Parser) span(ok func(byte) bool) string {
	start := p.pos
	for p.pos < len(p.line) && ok(p.line[p.pos]) {
		p.pos++
	}
	return string(p.line[start:p.pos])
}

// atom reads an atom.
func (p *Parser) atom() (string, error) {
	a := p.span(isAtomChar)
	if a == "" {
		return "", p.expected("atom")
	}
	return a, nil
}

// number reads a number (RFC 9051: 32-bit unsigned).
func (p *Parser) number() (uint32, error) {
	n, err := p.number64()
	if err != nil {
		return 0, err
	}
	if n > 1<<32-1 {
		return 0, bad("number %d out of range", n)
	}
	return uint32(n), nil
}

// number64 reads a mod-sequence value or number64 (63-bit: RFC 7162 §7, RFC 9051).
func (p *Parser) number64() (uint64, error) {
	d := p.span(func(c byte) bool { return c >= '0' && c <= '9' })
	if d == "" {
		return 0, p.expected("number")
	}
	if len(d) > 19 {
		return 0, bad("number %.25s out of range", d)
	}
	n, err := strconv.ParseUint(d, 10, 64)
	if err != nil || n > 1<<63-1 {
		return 0, bad("number %s out of range", d)
	}
	return n, nil
}

func (p *Parser) nzNumber() (uint32, error) {
	n, err := p.number()
	if err == nil && n == 0 {
		return 0, bad("zero where a nonzero number is expected")
	}
	return n, err
}

// quoted reads a quoted string ("..." with \" and \\). 8-bit text is taken as it comes
// (UTF-8 under IMAP4rev2 and UTF8=ACCEPT; RFC 9051 §4.3).
func (p *Parser) quoted() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		if p.eol() {
			return "", bad("unterminated quoted string")
		}
		c := p.line[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.eol() || (p.line[p.pos] != '"' && p.line[p.pos] != '\\') {
				return "", bad(`a quoted string may escape only " and \`)
			}
			b.WriteByte(p.line[p.pos])
			p.pos++
		case 0:
			return "", bad("NUL in a quoted string")
		default:
			b.WriteByte(c)
		}
	}
}

// literal reads a string literal {N} / {N+} (and literal8 ~{N} when binary) whole.
func (p *Parser) literal(binary bool) (string, error) {
	if binary {
		if err := p.expect('~'); err != nil {
			return "", err
		}
	}
	n, sync, err := p.literalHeader()
	if err != nil {
		return "", err
	}
	if n > p.lim.MaxStringLiteral || p.strings+n > p.lim.MaxStrings {
		return "", p.refuseLiteral(n, sync, &Error{Kind: Bad, Code: "TOOBIG", Text: fmt.Sprintf("literal of %d octets too big (at most %d)", n, p.lim.MaxStringLiteral)})
	}
	if sync {
		if err := p.cont("Ready for literal"); err != nil {
			return "", fmt.Errorf("%w: %w", ErrIO, err)
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(p.r, buf); err != nil {
		return "", fmt.Errorf("%w: %w", ErrIO, err)
	}
	if !binary && bytes.IndexByte(buf, 0) >= 0 {
		if err := p.readLine(); err != nil {
			return "", err
		}
		return "", bad("NUL in a literal (use literal8)")
	}
	p.strings += n
	if err := p.readLine(); err != nil {
		return "", err
	}
	return string(buf), nil
}

// literalHeader reads "{N}" or "{N+}" / "{N-}" that must end the line; sync says the client
// waits for a continuation request.
func (p *Parser) literalHeader() (n int64, sync bool, err error) {
	if err := p.expect('{'); err != nil {
		return 0, false, err
	}
	v, err := p.number64()
	if err != nil {
		return 0, false, err
	}
	sync = true
	if c := p.peek(); c == '+' || c == '-' {
		// LITERAL+ (RFC 7888); LITERAL- limits non-synchronising ones to 4096 octets,
		// and the parser's limits apply to both alike.
		sync = false
		p.pos++
	}
	if err := p.expect('}'); err != nil {
		return 0, false, err
	}
	if !p.eol() {
		return 0, false, bad("a literal must end its line")
	}
	return int64(v), sync, nil
}

// refuseLiteral answers e for a literal of n octets just announced. A synchronising one
// is never sent (no continuation request goes out); a non-synchronising one comes anyway
// and is skipped, unless it is larger than MaxSkip: then the connection must close.
func (p *Parser) refuseLiteral(n int64, sync bool, e *Error) error {
	if sync {
		return e
	}
	if n > p.lim.MaxSkip {
		e.Fatal = true
		return e
	}
	if _, err := io.CopyN(io.Discard, p.r, n); err != nil {
		return fmt.Errorf("%w: %w", ErrIO, err)
	}
	if err := p.readLine(); err != nil {
		return err
	}
	return e
}

// astring reads an atom of ASTRING-CHARs, a quoted string or a literal.
func (p *Parser) astring() (string, error) {
	switch p.peek() {
	case '"':
		return p.quoted()
	case '{':
		return p.literal(false)
	}
	a := p.span(isAstringChar)
	if a == "" {
		return "", p.expected("string")
	}
	return a, nil
}

// str reads a string: quoted or literal.
func (p *Parser) str() (string, error) {
	switch p.peek() {
	case '"':
		return p.quoted()
	case '{':
		return p.literal(false)
	case '~':
		return p.literal(true)
	}
	return "", p.expected("string")
}

// nstring reads a string or NIL; ok is false for NIL.
func (p *Parser) nstring() (s string, ok bool, err error) {
	if p.peekAtom("NIL") {
		p.pos += 3
		return "", false, nil
	}
	s, err = p.str()
	return s, err == nil, err
}

// peekAtom reports whether the next token is the atom a (case-insensitive).
func (p *Parser) peekAtom(a string) bool {
	if len(p.line)-p.pos < len(a) || !strings.EqualFold(string(p.line[p.pos:p.pos+len(a)]), a) {
		return false
	}
	rest := p.pos + len(a)
	return rest == len(p.line) || !isAtomChar(p.line[rest])
}

// listMailbox reads a LIST pattern: list-char atoms (with % and *) or a string.
func (p *Parser) listMailbox() (string, error) {
	switch p.peek() {
	case '"':
		return p.quoted()
	case '{':
		return p.literal(false)
	}
	a := p.span(isListChar)
	if a == "" {
		return "", p.expected("mailbox pattern")
	}
	return a, nil
}

// list reads "(" item *(SP item) ")" calling item for each; empty lists are allowed when
// empty is true.
func (p *Parser) list(empty bool, item func() error) error {
	if err := p.expect('('); err != nil {
		return err
	}
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	if p.peek() == ')' {
		p.pos++
		if !empty {
			return bad("empty list")
		}
		return nil
	}
	for n := 0; ; n++ {
		if n >= p.lim.MaxItems {
			return &Error{Kind: Bad, Code: "LIMIT", Text: fmt.Sprintf("more than %d items in a list", p.lim.MaxItems)}
		}
		if err := item(); err != nil {
			return err
		}
		if p.peek() == ')' {
			p.pos++
			return nil
		}
		if err := p.sp(); err != nil {
			return p.expected(`SP or ")"`)
		}
	}
}

func (p *Parser) enter() error {
	p.depth++
	if p.depth > p.lim.MaxDepth {
		return &Error{Kind: Bad, Code: "LIMIT", Text: fmt.Sprintf("nested deeper than %d", p.lim.MaxDepth)}
	}
	return nil
}

func (p *Parser) leave() { p.depth-- }
