package proxy

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadIMAPCommand(t *testing.T) {
	for _, tc := range []struct {
		in, tag, cmd string
		args         []string
		conts        int
		bad          bool
	}{
		{in: "a LOGIN alice pw\r\n", tag: "a", cmd: "LOGIN", args: []string{"alice", "pw"}},
		{in: "a login \"al\\\"ice\" \"p w\\\\\"\r\n", tag: "a", cmd: "LOGIN", args: []string{`al"ice`, `p w\`}},
		{in: "a LOGIN {5}\r\nalice {3+}\r\np w\r\n", tag: "a", cmd: "LOGIN", args: []string{"alice", "p w"}, conts: 1},
		{in: "a LOGIN alice \"pw\r\n", bad: true},
		{in: "a{ LOGIN x y\r\n", bad: true},
		{in: "a LOGIN x {99999}\r\n", bad: true},
		{in: "\r\n"},
		{in: "t CAPABILITY\r\n", tag: "t", cmd: "CAPABILITY"},
	} {
		conts := 0
		tag, cmd, args, err := readIMAPCommand(bufio.NewReader(strings.NewReader(tc.in)), func() error { conts++; return nil })
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %q %q %q", tc.in, tag, cmd, args)
			}
			continue
		}
		if err != nil || tag != tc.tag || cmd != tc.cmd || strings.Join(args, "|") != strings.Join(tc.args, "|") || conts != tc.conts {
			t.Errorf("%q: %q %q %q conts %d, %v", tc.in, tag, cmd, args, conts, err)
		}
	}
}

func TestDecodePlain(t *testing.T) {
	if u, p, err := decodePlain(encodePlain("alice", "pw")); err != nil || u != "alice" || p != "pw" {
		t.Fatal(u, p, err)
	}
	for _, bad := range []string{"!!", "", "YWxpY2U=" /* no NULs */} {
		if _, _, err := decodePlain(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzReadIMAPCommand: untrusted bytes before login never panic, and never make a
// command longer than the bound or a tag that is not safe to echo.
func FuzzReadIMAPCommand(f *testing.F) {
	for _, s := range []string{"a LOGIN x y\r\n", "a LOGIN {1}\r\nx {2+}\r\nyy\r\n", "a AUTHENTICATE PLAIN =\r\n", "\"\r\n", "{0}\r\n\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tag, _, args, err := readIMAPCommand(bufio.NewReader(strings.NewReader(in)), func() error { return nil })
		if err != nil {
			return
		}
		if tag != "" && !validTag(tag) {
			t.Fatalf("unsafe tag %q", tag)
		}
		n := 0
		for _, a := range args {
			n += len(a)
		}
		if n > maxIMAPCommand {
			t.Fatalf("%d bytes of arguments", n)
		}
	})
}

func FuzzDecodePlain(f *testing.F) {
	f.Add(encodePlain("alice", "pw"))
	f.Add("AGFsaWNlAA==")
	f.Fuzz(func(t *testing.T, in string) {
		u, p, err := decodePlain(in)
		if err == nil && (u == "" || p == "") {
			t.Fatalf("empty user or password accepted: %q", in)
		}
	})
}

func TestReadSieveCommand(t *testing.T) {
	for _, tc := range []struct {
		in, cmd string
		args    []string
		bad     bool
	}{
		{in: "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n", cmd: "AUTHENTICATE", args: []string{"PLAIN", "AGFsaWNlAHB3"}},
		{in: "authenticate \"PLAIN\" {12+}\r\nAGFsaWNlAHB3\r\n", cmd: "AUTHENTICATE", args: []string{"PLAIN", "AGFsaWNlAHB3"}},
		{in: "NOOP \"STARTTLS-RESYNC-CAPA\"\r\n", cmd: "NOOP", args: []string{"STARTTLS-RESYNC-CAPA"}},
		{in: "AUTHENTICATE \"PLAIN\r\n", bad: true},
		{in: "AUTHENTICATE {99999+}\r\n", bad: true},
	} {
		cmd, args, err := readSieveCommand(bufio.NewReader(strings.NewReader(tc.in)))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %q %q", tc.in, cmd, args)
			}
			continue
		}
		if err != nil || cmd != tc.cmd || strings.Join(args, "|") != strings.Join(tc.args, "|") {
			t.Errorf("%q: %q %q, %v", tc.in, cmd, args, err)
		}
	}
}

// FuzzReadSieveCommand: any input gives a command or an error, within the bound.
func FuzzReadSieveCommand(f *testing.F) {
	f.Add("AUTHENTICATE \"PLAIN\" {3+}\r\nabc\r\n")
	f.Add("NOOP \"x\\\"y\"\r\n")
	f.Add("{5}\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		cmd, args, err := readSieveCommand(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		n := len(cmd)
		for _, a := range args {
			n += len(a)
		}
		if n > maxSieveCommand {
			t.Fatalf("%d octets read past the bound", n)
		}
	})
}

func TestMailFor(t *testing.T) {
	lhlo := "250-store\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES"
	for in, want := range map[string]string{
		"FROM:<a@b> BODY=8BITMIME SIZE=65": "FROM:<a@b> BODY=8BITMIME",
		"FROM: <a@b> SMTPUTF8":             "FROM:<a@b>",
		"FROM:<>":                          "FROM:<>",
	} {
		if got := mailFor(in, lhlo); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
