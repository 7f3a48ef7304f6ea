package sieve

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const testMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob+lists@example.com, carol@example.net\r\n" +
	"Subject: =?utf-8?q?Caf=C3=A9?= meeting\r\n" +
	"X-Spam-Flag: YES\r\n" +
	"List-Id: <golang.example.org>\r\n" +
	"\r\n" +
	"Hello Bob,\r\nsee you.\r\n"

func run(t *testing.T, script string, env Envelope) *Result {
	t.Helper()
	s, err := Compile([]byte(script), Options{})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	res, err := s.Run(context.Background(), NewMessage([]byte(testMsg)), env, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res
}

func TestActions(t *testing.T) {
	env := Envelope{From: "alice@example.org", To: "bob+lists@example.com"}
	cases := []struct {
		name, script string
		want         []Action
	}{
		{"empty", ``, []Action{Keep{Implicit: true}}},
		{"fileinto", `require "fileinto"; if header :contains "subject" "café" { fileinto "Meetings"; }`,
			[]Action{FileInto{Mailbox: "Meetings"}}},
		{"address domain", `require "fileinto"; if address :domain :is "from" "EXAMPLE.org" { fileinto "A"; stop; } fileinto "B";`,
			[]Action{FileInto{Mailbox: "A"}}},
		{"subaddress", `require ["fileinto","subaddress","envelope"]; if envelope :detail "to" "lists" { fileinto "L"; }`,
			[]Action{FileInto{Mailbox: "L"}}},
		{"redirect copy", `require "copy"; redirect :copy "x@example.net"; redirect :copy "x@example.net";`,
			[]Action{Redirect{Address: "x@example.net", Copy: true}, Keep{Implicit: true}}},
		{"discard", `if exists "list-id" { discard; }`, []Action{Discard{}}},
		{"keep twice", `keep; keep;`, []Action{Keep{}}},
		{"flags", `require ["imap4flags","fileinto","copy"]; addflag "\\Seen"; fileinto :copy "X"; addflag "$Y";`,
			[]Action{FileInto{Mailbox: "X", Flags: []string{`\Seen`}, Copy: true}, Keep{Flags: []string{`\Seen`, "$Y"}, Implicit: true}}},
		{"variables", `require ["variables","fileinto"]; if header :matches "subject" "* meeting" { fileinto "M-${1}"; }`,
			[]Action{FileInto{Mailbox: "M-Café"}}},
		{"size", `if size :over 10K { discard; } elsif size :under 1 { discard; } else { keep; }`, []Action{Keep{}}},
		{"anyof not", `if anyof(false, not true, allof(true, header :is "x-spam-flag" "yes")) { discard; }`, []Action{Discard{}}},
		{"numeric", `require "comparator-i;ascii-numeric"; if header :is :comparator "i;ascii-numeric" "x-none" "" { discard; }`,
			[]Action{Keep{Implicit: true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := run(t, c.script, env).Actions
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("actions = %#v, want %#v", got, c.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := map[string]string{
		`require "nosuch";`:      "1:9",
		"keep;\nfileinto \"x\";": "2:1",
		`if true { keep; `:       "1:17",
		`keep`:                   "1:5",
		"require \"fileinto\";\nkeep;\nrequire \"copy\";": "3:1",
		`redirect "not an address";`:                      "1:10",
		`if header :is :contains "a" "b" {}`:              "1:15",
	}
	for src, pos := range cases {
		_, err := Compile([]byte(src), Options{})
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Errorf("%q: error %v, want a CompileError at %s", src, err, pos)
			continue
		}
		if got := ce.Line; !strings.HasPrefix(pos, itoa(got)+":") || itoa(ce.Col) != pos[strings.IndexByte(pos, ':')+1:] {
			t.Errorf("%q: error at %d:%d (%s), want %s", src, ce.Line, ce.Col, ce.Msg, pos)
		}
	}
}
