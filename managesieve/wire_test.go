package managesieve

import (
	"bufio"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var testLimits = Limits{MaxLine: 2048, MaxLiteral: 100, MaxDiscard: 1000, MaxArgs: 4}

func TestReadCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		err  string // "" none; else a substring of the error
	}{
		{in: "CAPABILITY\r\n", want: Command{Name: "CAPABILITY"}},
		{in: "logout\n", want: Command{Name: "LOGOUT"}},
		{in: `Havespace "my script" 12345` + "\r\n", want: Command{Name: "HAVESPACE", Args: []Arg{{Str: "my script"}, {Str: "12345", Num: 12345, IsNum: true}}}},
		{in: `PUTSCRIPT "a\"b\\c" {5+}` + "\r\nkeep;\r\n", want: Command{Name: "PUTSCRIPT", Args: []Arg{{Str: `a"b\c`}, {Str: "keep;"}}}},
		{in: "PUTSCRIPT {1}\r\nx {0+}\r\n\r\n", want: Command{Name: "PUTSCRIPT", Args: []Arg{{Str: "x"}, {Str: ""}}}},
		{in: "\r\n", err: "expected a command"},
		{in: `NOOP "a\x"` + "\r\n", err: "bad escape"},
		{in: "NOOP \"a\r\n", err: "line break"},
		{in: "HAVESPACE \"a\" 4294967296\r\n", err: "number out of range"},
		{in: "NOOP x\r\n", err: "expected a string"},
		{in: "NOOP  \"a\"\r\n", err: "expected a string"},
		{in: "NOOP {5x}\r\n", err: "bad literal"},
		{in: "NOOP {3} abc\r\n", err: "ends its line"},
		{in: "NOOP \"" + strings.Repeat("a", 1025) + "\"\r\n", err: "longer than 1024"},
		{in: "A \"1\" \"2\" \"3\" \"4\" \"5\"\r\n", err: "too many arguments"},
		{in: "NOOP {200+}\r\n" + strings.Repeat("x", 200) + "\r\n", err: "too big"},
		{in: "NOOP {2000+}\r\n", err: "too big"},
		{in: "NOOP {5+}\r\nab", err: "EOF"},
		{in: strings.Repeat("A", 3000), err: "too long"},
	} {
		r := bufio.NewReader(strings.NewReader(tc.in))
		got, err := ReadCommand(r, testLimits)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%.40q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%.40q = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// After a syntax error or a discarded literal the next command reads cleanly.
func TestReadCommandRecovers(t *testing.T) {
	in := "NOOP x y z\r\nNOOP {200+}\r\n" + strings.Repeat("x", 200) + " \"more\"\r\nLOGOUT\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	var se *SyntaxError
	if _, err := ReadCommand(r, testLimits); !errors.As(err, &se) {
		t.Fatalf("first: %v", err)
	}
	var big *LiteralTooBigError
	if _, err := ReadCommand(r, testLimits); !errors.As(err, &big) || !big.Discarded || big.Size != 200 {
		t.Fatalf("second: %v", err)
	}
	if cmd, err := ReadCommand(r, testLimits); err != nil || cmd.Name != "LOGOUT" {
		t.Fatalf("third: %+v %v", cmd, err)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":          `""`,
		"plain":     `"plain"`,
		`a"b\c`:     `"a\"b\\c"`,
		"two\nline": "{8}\r\ntwo\nline",
		// A quoted string holds UTF-8 only (RFC 5804 §4, SAFE-UTF8-CHAR): a compiler
		// error quoting a script's stray byte goes as a literal.
		"cap '\xffx'": "{8}\r\ncap '\xffx'",
		"grüße":       `"grüße"`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %q, want %q", in, got, want)
		}
		if strings.HasPrefix(want, `"`) {
			cmd, err := ReadCommand(bufio.NewReader(strings.NewReader("X "+quote(in)+"\r\n")), testLimits)
			if err != nil || cmd.Args[0].Str != in {
				t.Errorf("round trip of %q: %+v %v", in, cmd, err)
			}
		}
	}
}

// FuzzReadCommand: the command parser never panics, never returns more than its limits
// allow, and what it parses survives quoting.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"CAPABILITY\r\n", `AUTHENTICATE "PLAIN" "AGFsaWNlAHB3"` + "\r\n", "PUTSCRIPT \"s\" {5+}\r\nkeep;\r\n",
		"HAVESPACE \"x\" 100\r\n", "NOOP {3}\r\nabc\r\n", "\"*\"\r\n", "X \"a\\\"\"\r\nY\r\n", "NOOP {999+}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(strings.NewReader(string(in)))
		for range 8 {
			cmd, err := ReadCommand(r, testLimits)
			if err != nil {
				var se *SyntaxError
				var big *LiteralTooBigError
				if errors.As(err, &se) || errors.As(err, &big) && big.Discarded {
					continue
				}
				break
			}
			if len(cmd.Args) > testLimits.MaxArgs {
				t.Fatalf("%d arguments", len(cmd.Args))
			}
			for _, a := range cmd.Args {
				if int64(len(a.Str)) > testLimits.MaxLiteral && !a.IsNum {
					t.Fatalf("argument of %d octets", len(a.Str))
				}
				if a.IsNum {
					continue
				}
				back, err := ReadCommand(bufio.NewReader(strings.NewReader("X "+quote(a.Str)+"\r\n")), Limits{MaxLine: 4096, MaxLiteral: 4096, MaxArgs: 1})
				if err != nil || back.Args[0].Str != a.Str {
					t.Fatalf("quote(%q) reads back as %+v, %v", a.Str, back, err)
				}
			}
		}
		r = bufio.NewReader(strings.NewReader(string(in)))
		ReadString(r, testLimits)
	})
}

// The rest of a refused command is skipped with the literals it announces: their octets
// (a script's text) are data, never the next command.
func TestRecoverySkipsLiterals(t *testing.T) {
	for _, in := range []string{
		"PUTSCRIPT x {14+}\r\nDELETESCRIPT\r\n\r\nCAPABILITY\r\n",                                          // after a syntax error
		"PUTSCRIPT {200+}\r\n" + strings.Repeat("x", 200) + " {14+}\r\nDELETESCRIPT\r\n\r\nCAPABILITY\r\n", // after a discarded literal
	} {
		r := bufio.NewReader(strings.NewReader(in))
		if _, err := ReadCommand(r, testLimits); err == nil {
			t.Fatalf("%q: no error", in)
		}
		if cmd, err := ReadCommand(r, testLimits); err != nil || cmd.Name != "CAPABILITY" {
			t.Fatalf("%q: next %+v %v, want CAPABILITY (the literal ran)", in, cmd, err)
		}
	}
	// A literal too big to skip ends the session.
	r := bufio.NewReader(strings.NewReader("PUTSCRIPT x {5000+}\r\n"))
	var big *LiteralTooBigError
	if _, err := ReadCommand(r, testLimits); !errors.As(err, &big) || big.Discarded {
		t.Fatalf("big literal after a syntax error: %v", err)
	}
}
