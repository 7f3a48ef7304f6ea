package sieve

import (
	"context"
	"testing"
	"time"
)

var fuzzSeeds = []string{
	``,
	`require ["fileinto","variables","imap4flags","vacation","body","regex","relational","date","editheader","include","envelope","subaddress","copy","reject","mailbox","duplicate","spamtest","virustest","environment","ihave","special-use","index","encoded-character"];`,
	`if header :matches "subject" "*a?b*" { fileinto "x${1}"; } elsif address :domain "from" "x" { discard; } else { keep; }`,
	"require \"vacation\"; vacation :days 3 :subject \"s\" text:\nhello\n..\n.\n;",
	`require ["variables","regex"]; if header :regex "subject" "(a+)(b)" { set :upper "v" "${2}"; }`,
	`require ["editheader"]; addheader "X-A" "b"; deleteheader :index 1 "subject";`,
	`require ["body","relational","comparator-i;ascii-numeric"]; if body :count "ge" :comparator "i;ascii-numeric" :content "text" "1" {}`,
	`require ["date","relational"]; if currentdate :value "ge" "date" "2020-01-01" {} if date :zone "+0100" "date" "hour" "10" {}`,
	`require "encoded-character"; if header :is "s" "${hex:41 42}${unicode:1F600}" {}`,
	`require ["duplicate","spamtest","virustest"]; if duplicate :seconds 60 { discard; } if spamtest :value "ge" "5" {} if virustest "1" {}`,
	"if true { if true { if true { stop; } } }",
	"/* comment */ # comment\nkeep;",
}

// FuzzCompile: the parser and compiler never panic or hang, whatever the input.
func FuzzCompile(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Compile(src, Options{})
		if err == nil && s == nil {
			t.Fatal("nil script without error")
		}
	})
}

// FuzzRun: running any compiled script on any message returns a result (the implicit
// keep at least on error) and never panics.
func FuzzRun(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), []byte(testMsg))
	}
	f.Add([]byte(`require "body"; if body :raw :contains "x" {}`), []byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--a--"))
	f.Fuzz(func(t *testing.T, src, msg []byte) {
		s, err := Compile(src, Options{Limits: Limits{MaxCPU: time.Second}})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res, err := s.Run(ctx, NewMessage(msg), Envelope{From: "a@example.org", To: "b+x@example.com"}, nil)
		if res == nil {
			t.Fatalf("nil result (err %v)", err)
		}
		if err != nil && !res.ImplicitKeep {
			t.Fatalf("failed run without the implicit keep: %v", err)
		}
	})
}
