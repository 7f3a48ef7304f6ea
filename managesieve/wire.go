package managesieve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The command syntax of RFC 5804 §4:
//
//	command  = name *(SP argument) CRLF
//	argument = string / number
//	string   = quoted / literal-c2s
//	quoted   = DQUOTE *QUOTED-CHAR DQUOTE   ; at most 1024 octets between the quotes
//	literal  = "{" number [ "+" ] "}" CRLF *OCTET
//	number   = 1*DIGIT                       ; 0 .. 4294967295
//
// Clients send literals without waiting for a continuation (RFC 5804 has none), so "{N}"
// and "{N+}" read the same here. Names are case-insensitive atoms.

// Arg is one argument of a command.
type Arg struct {
	// Str is the string's value, or the number's digits.
	Str string
	// Num is the value of a number argument; IsNum says which it was.
	Num   uint32
	IsNum bool
}

// Command is one parsed command line.
type Command struct {
	Name string // upper-cased
	Args []Arg
}

// Limits bound what ReadCommand accepts.
type Limits struct {
	// MaxLine bounds the octets of a command outside its literals.
	MaxLine int
	// MaxLiteral bounds one literal; a longer one is a LiteralTooBigError.
	MaxLiteral int64
	// MaxDiscard is the longest literal that is read and thrown away after it was found
	// too big (the session can go on with NO (QUOTA/MAXSIZE)); a longer one ends the
	// session.
	MaxDiscard int64
	// MaxArgs bounds the arguments of one command.
	MaxArgs int
}

// maxQuoted is RFC 5804 §4's bound on a quoted string.
const maxQuoted = 1024

// SyntaxError is a malformed command; the rest of its line has been read, so the session
// answers NO and goes on.
type SyntaxError struct{ Msg string }

func (e *SyntaxError) Error() string { return e.Msg }

// LiteralTooBigError is a literal over Limits.MaxLiteral. When Discarded, its octets and
// the rest of the line have been read and the session can go on.
type LiteralTooBigError struct {
	Size      int64
	Discarded bool
}

func (e *LiteralTooBigError) Error() string {
	return fmt.Sprintf("literal of %d octets is too big", e.Size)
}

// ErrLineTooLong is a command line over Limits.MaxLine; the session ends, since what
// follows cannot be told from the rest of the command.
var ErrLineTooLong = errors.New("command line too long")

// lineReader counts the octets of the command outside literals.
type lineReader struct {
	r   *bufio.Reader
	n   int
	lim Limits
}

func (l *lineReader) byte() (byte, error) {
	b, err := l.r.ReadByte()
	if err != nil {
		return 0, err
	}
	l.n++
	if l.n > l.lim.MaxLine {
		return 0, ErrLineTooLong
	}
	return b, nil
}

// skipLine reads up to and including the next LF, for a syntax error's recovery. A
// literal that the line announces at its end ("{N+}", which the client sends without
// waiting) is skipped with it, and the line after it: its octets are data, never a command.
// One larger than MaxDiscard is a LiteralTooBigError that ends the session.
func (l *lineReader) skipLine() error {
	var tail [16]byte // the end of the line, for a literal's announcement
	n := 0
	for {
		b, err := l.byte()
		if err != nil {
			return err
		}
		if b != '\n' {
			copy(tail[:], tail[1:])
			tail[len(tail)-1] = b
			n++
			continue
		}
		size, ok := literalAtEnd(tail[len(tail)-min(n, len(tail)):])
		if !ok {
			return nil
		}
		if size > l.lim.MaxDiscard {
			return &LiteralTooBigError{Size: size}
		}
		if _, err := io.CopyN(io.Discard, l.r, size); err != nil {
			return err
		}
		n = 0
	}
}

// literalAtEnd reports whether b ends with a literal's announcement, "{N}" or "{N+}" and
// an optional CR, and its size.
func literalAtEnd(b []byte) (int64, bool) {
	b = bytes.TrimSuffix(b, []byte("\r"))
	b, ok := bytes.CutSuffix(b, []byte("}"))
	if !ok {
		return 0, false
	}
	b = bytes.TrimSuffix(b, []byte("+"))
	i := bytes.LastIndexByte(b, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[i+1:]), 10, 32)
	if err != nil {
		return 0, false
	}
	return int64(n), true
}

// syntax reads the rest of the line and returns a SyntaxError, or the reading's error.
func (l *lineReader) syntax(prev byte, format string, args ...any) error {
	if prev != '\n' {
		if err := l.skipLine(); err != nil {
			return err
		}
	}
	return &SyntaxError{Msg: fmt.Sprintf(format, args...)}
}

// ReadCommand reads one command from r. An empty line is a SyntaxError. Errors other
// than *SyntaxError and a discarded *LiteralTooBigError leave r in the middle of a
// command: the session must end.
func ReadCommand(r *bufio.Reader, lim Limits) (Command, error) {
	l := &lineReader{r: r, lim: lim}
	var cmd Command
	// The name: an atom of letters.
	var name strings.Builder
	var b byte
	var err error
	for {
		if b, err = l.byte(); err != nil {
			return cmd, err
		}
		if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' {
			if name.Len() >= 32 {
				return cmd, l.syntax(b, "command name too long")
			}
			name.WriteByte(b)
			continue
		}
		break
	}
	cmd.Name = strings.ToUpper(name.String())
	if cmd.Name == "" {
		return cmd, l.syntax(b, "expected a command")
	}
	for {
		switch b {
		case '\r':
			if b, err = l.byte(); err != nil {
				return cmd, err
			}
			if b != '\n' {
				return cmd, l.syntax(b, "CR without LF")
			}
			return cmd, nil
		case '\n':
			return cmd, nil
		case ' ':
		default:
			return cmd, l.syntax(b, "unexpected character %q", b)
		}
		if len(cmd.Args) >= lim.MaxArgs {
			return cmd, l.syntax(b, "too many arguments")
		}
		if b, err = l.byte(); err != nil {
			return cmd, err
		}
		var a Arg
		switch {
		case b == '"':
			if a.Str, err = l.quoted(); err != nil {
				return cmd, err
			}
		case b == '{':
			if a.Str, err = l.literal(); err != nil {
				return cmd, err
			}
		case b >= '0' && b <= '9':
			digits := []byte{b}
			for {
				if b, err = l.byte(); err != nil {
					return cmd, err
				}
				if b < '0' || b > '9' {
					break
				}
				digits = append(digits, b)
			}
			n, perr := strconv.ParseUint(string(digits), 10, 32)
			if perr != nil {
				return cmd, l.syntax(b, "number out of range")
			}
			a = Arg{Str: string(digits), Num: uint32(n), IsNum: true}
			cmd.Args = append(cmd.Args, a)
			continue // b holds the character after the number
		default:
			return cmd, l.syntax(b, "expected a string or a number")
		}
		cmd.Args = append(cmd.Args, a)
		if b, err = l.byte(); err != nil {
			return cmd, err
		}
	}
}

// ReadString reads a line that holds one string (quoted or literal) or a bare "*" (a
// client's SASL response, RFC 5804 §2.1). Errors are as ReadCommand's.
func ReadString(r *bufio.Reader, lim Limits) (string, error) {
	l := &lineReader{r: r, lim: lim}
	b, err := l.byte()
	if err != nil {
		return "", err
	}
	var s string
	switch b {
	case '"':
		s, err = l.quoted()
	case '{':
		s, err = l.literal()
	case '*':
		s = "*"
	default:
		return "", l.syntax(b, "expected a string")
	}
	if err != nil {
		return "", err
	}
	if b, err = l.byte(); err != nil {
		return "", err
	}
	if b == '\r' {
		if b, err = l.byte(); err != nil {
			return "", err
		}
	}
	if b != '\n' {
		return "", l.syntax(b, "expected the end of the line")
	}
	return s, nil
}

// quoted reads a quoted string after its opening quote.
func (l *lineReader) quoted() (string, error) {
	var s []byte
	for {
		b, err := l.byte()
		if err != nil {
			return "", err
		}
		switch b {
		case '"':
			return string(s), nil
		case '\\':
			if b, err = l.byte(); err != nil {
				return "", err
			}
			if b != '"' && b != '\\' {
				return "", l.syntax(b, "bad escape in a quoted string")
			}
		case '\r', '\n', 0:
			return "", l.syntax(b, "line break or NUL in a quoted string")
		}
		if len(s) >= maxQuoted {
			return "", l.syntax(b, "quoted string longer than %d octets; use a literal", maxQuoted)
		}
		s = append(s, b)
	}
}

// literal reads a literal after its opening brace: "N}" or "N+}", CRLF, N octets.
func (l *lineReader) literal() (string, error) {
	var digits []byte
	var b byte
	var err error
	for {
		if b, err = l.byte(); err != nil {
			return "", err
		}
		if b < '0' || b > '9' {
			break
		}
		if len(digits) >= 10 {
			return "", l.syntax(b, "literal size out of range")
		}
		digits = append(digits, b)
	}
	if b == '+' {
		if b, err = l.byte(); err != nil {
			return "", err
		}
	}
	if b != '}' || len(digits) == 0 {
		return "", l.syntax(b, "bad literal")
	}
	if b, err = l.byte(); err != nil {
		return "", err
	}
	if b == '\r' {
		if b, err = l.byte(); err != nil {
			return "", err
		}
	}
	if b != '\n' {
		return "", l.syntax(b, "a literal's size ends its line")
	}
	n, err := strconv.ParseUint(string(digits), 10, 32)
	if err != nil {
		return "", l.syntax('\n', "literal size out of range")
	}
	size := int64(n)
	if size > l.lim.MaxLiteral {
		if size > l.lim.MaxDiscard {
			return "", &LiteralTooBigError{Size: size}
		}
		if _, err := io.CopyN(io.Discard, l.r, size); err != nil {
			return "", err
		}
		if err := l.skipLine(); err != nil {
			return "", err
		}
		return "", &LiteralTooBigError{Size: size, Discarded: true}
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(l.r, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// quote returns s as a ManageSieve string: quoted when it can be, a literal otherwise
// (RFC 5804 §4: quoted strings hold UTF-8 without CR, LF or NUL, at most 1024 octets; a
// compiler's error may quote a script's stray byte).
func quote(s string) string {
	if len(s) > maxQuoted || strings.ContainsAny(s, "\r\n\x00") || !utf8.ValidString(s) {
		return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
	}
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
