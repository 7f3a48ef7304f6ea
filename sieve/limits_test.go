package sieve

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// Hostile scripts fail to compile or stop at a limit with an error: never a hang,
// a crash or a lost message.
func TestHostileCompile(t *testing.T) {
	cases := map[string]string{
		"deep blocks":       strings.Repeat("if true {", 5000) + strings.Repeat("}", 5000),
		"deep not":          "if " + strings.Repeat("not ", 100000) + "true {}",
		"deep anyof":        "if " + strings.Repeat("anyof(", 5000) + "true" + strings.Repeat(")", 5000) + " {}",
		"over size":         "#" + strings.Repeat("x", DefaultMaxScriptSize+1),
		"unterminated":      `if header :is "a" "b`,
		"unterminated ml":   "require \"fileinto\"; fileinto text:\nfoo\n",
		"bad number":        "if size :over 99999999999999999999G {}",
		"too many vars":     "require \"variables\";" + manyVars(300),
		"bad regex":         `require "regex"; if header :regex "s" "(" {}`,
		"include no loader": `require "include"; include "x";`,
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Compile([]byte(src), Options{})
			var ce *CompileError
			var el ErrorList
			if !errors.As(err, &ce) && !errors.As(err, &el) {
				t.Fatalf("error %v, want a CompileError", err)
			}
		})
	}
}

func manyVars(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`set "v` + itoa(i) + `" "x";`)
	}
	return b.String()
}

func TestIncludeLoops(t *testing.T) {
	scripts := map[string]string{
		"a": `require "include"; include "b";`,
		"b": `require "include"; include "a";`,
		"c": `require "include"; include :once "c"; keep;`,
	}
	opt := Options{Include: func(loc Location, name string) ([]byte, error) {
		s, ok := scripts[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(s), nil
	}}
	if _, err := Compile([]byte(`require "include"; include "a";`), opt); err == nil || !strings.Contains(err.Error(), "circular") {
		t.Errorf("include loop: %v, want a circular include error", err)
	}
	// A recursive include :once compiles and runs the script once.
	s, err := Compile([]byte(`require "include"; include "c";`), opt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background(), NewMessage([]byte(testMsg)), Envelope{}, nil)
	if err != nil || len(res.Actions) != 1 {
		t.Fatalf("run: %v %#v", err, res)
	}
	if _, err := Compile([]byte(`require "include"; include :optional "missing"; keep;`), opt); err != nil {
		t.Errorf("include :optional of a missing script: %v", err)
	}
}

func TestRunLimits(t *testing.T) {
	msg := NewMessage([]byte("Subject: " + strings.Repeat("a", 60000) + "\r\n\r\nbody\r\n"))
	cases := map[string]struct {
		src     string
		wantErr string
	}{
		"actions":   {`require "fileinto";` + manyFileinto(40), "total number of actions"},
		"redirects": {`redirect "a@x.org"; redirect "b@x.org"; redirect "c@x.org"; redirect "d@x.org"; redirect "e@x.org";`, "redirect actions exceeds"},
		// Go's regexp runs in linear time: a classic catastrophic pattern is fast.
		"regex": {`require "regex"; if header :regex "subject" "^(a+)+$" { discard; }`, ""},
		// Many stars over a long value stay O(pattern × value).
		"stars": {`if header :matches "subject" "` + strings.Repeat("*a", 200) + `b" { discard; }`, ""},
		// Doubling a variable stops at MaxVariableSize.
		"huge variable": {`require ["variables", "relational", "comparator-i;ascii-numeric"]; set "a" "xxxxxxxxxxxxxxxx";` + strings.Repeat(`set "a" "${a}${a}";`, 40) +
			`if string :count "eq" :comparator "i;ascii-numeric" "${a}" "1" {}`, ""},
		"error command": {`require "ihave"; error "stop here";`, "stop here"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Compile([]byte(c.src), Options{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Run(context.Background(), msg, Envelope{From: "a@b.c", To: "d@e.f"}, nil)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("run error %v, want %q", err, c.wantErr)
			}
			// The failed run still keeps the message.
			if !res.ImplicitKeep || len(res.Actions) != 1 {
				t.Errorf("failed run result %#v, want the implicit keep alone", res)
			}
		})
	}
}

func manyFileinto(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`fileinto "f` + itoa(i) + `";`)
	}
	return b.String()
}

func TestVariableSizeLimit(t *testing.T) {
	s, err := Compile([]byte(`require "variables"; set "a" "0123456789";`+strings.Repeat(`set "a" "${a}${a}";`, 20)+
		`set :length "n" "${a}"; if string :is "${n}" "4096" { discard; }`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background(), NewMessage([]byte(testMsg)), Envelope{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Actions[0].(Discard); !ok {
		t.Errorf("variable not capped at %d bytes: %#v", DefaultMaxVariableSize, res.Actions)
	}
}

func TestContextCancel(t *testing.T) {
	s, err := Compile([]byte(strings.Repeat("if true { }\n", 200)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := s.Run(ctx, NewMessage([]byte(testMsg)), Envelope{}, nil)
	if err == nil || !res.ImplicitKeep {
		t.Fatalf("cancelled run: %v %#v, want an error and the implicit keep", err, res)
	}
}
