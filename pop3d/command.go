package pop3d

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Command is one parsed POP3 command line.
type Command struct {
	Name string   // upper-cased keyword
	Args []string // space-separated arguments
}

// Limits of the command syntax. RFC 2449 §4: keywords are 3–4 characters, arguments up to
// 40 characters, a command line up to 255 octets including CRLF. PASS may carry a longer
// password and AUTH a longer initial response, so the line limit is larger and enforced
// by the reader.
const (
	maxArgs   = 4
	maxArgLen = 4096
)

var errSyntax = errors.New("syntax error")

// ParseCommand parses a command line without its CRLF. Keywords are case-insensitive
// (RFC 1939 §3). PASS keeps everything after the first space as one argument, since
// passwords may contain spaces (RFC 1939 §7).
func ParseCommand(line string) (Command, error) {
	if line == "" {
		return Command{}, fmt.Errorf("%w: empty command", errSyntax)
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return Command{}, fmt.Errorf("%w: control character 0x%02x", errSyntax, c)
		}
	}
	name, rest, hasArgs := strings.Cut(line, " ")
	if len(name) < 3 || len(name) > 4 {
		return Command{}, fmt.Errorf("%w: bad keyword %q", errSyntax, truncate(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return Command{}, fmt.Errorf("%w: bad keyword %q", errSyntax, truncate(name))
		}
	}
	cmd := Command{Name: strings.ToUpper(name)}
	if !hasArgs {
		return cmd, nil
	}
	if cmd.Name == "PASS" {
		if rest == "" || len(rest) > maxArgLen {
			return Command{}, fmt.Errorf("%w: PASS needs one argument", errSyntax)
		}
		cmd.Args = []string{rest}
		return cmd, nil
	}
	args := strings.Split(rest, " ")
	if len(args) > maxArgs {
		return Command{}, fmt.Errorf("%w: too many arguments", errSyntax)
	}
	for _, a := range args {
		if a == "" || len(a) > maxArgLen {
			return Command{}, fmt.Errorf("%w: bad argument", errSyntax)
		}
	}
	cmd.Args = args
	return cmd, nil
}

func truncate(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// msgNumber parses a message-number argument (RFC 1939 §3: decimal, starting at 1).
func msgNumber(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, fmt.Errorf("%w: bad message number", errSyntax)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: bad message number %q", errSyntax, s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: bad message number %q", errSyntax, s)
	}
	return n, nil
}

// lineCount parses TOP's line count (RFC 1939 §7: a non-negative number): digits only,
// no sign; a count beyond int64 is an error, not "the whole message".
func lineCount(s string) (int, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: bad line count %q", errSyntax, truncate(s))
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || s == "" {
		return 0, fmt.Errorf("%w: bad line count %q", errSyntax, truncate(s))
	}
	return n, nil
}
