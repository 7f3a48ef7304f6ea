package sieve

import (
	"context"
	"strings"
	"testing"
)

// benchScript is a typical user script: 20 rules of the kinds webmail filters generate.
const benchScript = `require ["fileinto", "imap4flags", "envelope", "variables", "vacation", "copy", "relational", "comparator-i;ascii-numeric"];
if header :contains "X-Spam-Flag" "YES" { fileinto "Junk"; stop; }
if address :is "from" "boss@example.com" { addflag "\\Flagged"; }
if header :contains "subject" "invoice" { fileinto "Billing"; }
if header :contains "list-id" "golang-nuts" { fileinto "Lists/golang"; stop; }
if header :contains "list-id" "rust-users" { fileinto "Lists/rust"; stop; }
if address :domain :is "from" "github.com" { fileinto "GitHub"; }
if header :matches "subject" "[JIRA] *" { fileinto "Jira"; }
if address :is "to" "sales@example.com" { fileinto "Sales"; }
if envelope :is "from" "newsletter@shop.example" { fileinto "Shopping"; }
if header :contains "subject" ["lottery", "viagra", "winner"] { discard; stop; }
if size :over 5M { fileinto "Large"; }
if header :is "precedence" "bulk" { fileinto "Bulk"; }
if exists "x-mailing-list" { fileinto "Lists"; }
if address :localpart :is "from" "noreply" { addflag "$NoReply"; }
if header :contains "cc" "team@example.com" { fileinto :copy "Team"; }
if header :value "ge" :comparator "i;ascii-numeric" "x-priority" "4" { addflag "$Low"; }
if anyof (header :contains "subject" "urgent", header :is "importance" "high") { addflag "\\Flagged"; }
if allof (address :domain "from" "example.org", not header :contains "subject" "re:") { fileinto "Org"; }
if header :matches "from" "*@partner.example" { set "p" "${1}"; fileinto "Partners"; }
if header :contains "subject" "out of office" { discard; }
`

func benchMessage() []byte {
	var b strings.Builder
	b.WriteString("Return-Path: <alice@example.org>\r\nReceived: from mx.example.org by mx.example.com; Mon, 2 Nov 2026 10:00:00 +0100\r\n")
	b.WriteString("From: Alice Example <alice@example.org>\r\nTo: Bob <bob@example.com>\r\nCc: carol@example.com\r\n")
	b.WriteString("Subject: Meeting notes for the quarterly review\r\nDate: Mon, 2 Nov 2026 10:00:00 +0100\r\n")
	b.WriteString("Message-ID: <20261102100000.1234@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < 4096 {
		b.WriteString("The quarterly review is on Thursday; please bring the figures and the plan.\r\n")
	}
	return []byte(b.String())
}

// BenchmarkRun: compile once, run many, on a 4 KiB message (target: under 20 µs and
// 50 allocations per run).
func BenchmarkRun(b *testing.B) {
	s, err := Compile([]byte(benchScript), Options{})
	if err != nil {
		b.Fatal(err)
	}
	msg := NewMessage(benchMessage())
	env := Envelope{From: "alice@example.org", To: "bob@example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := s.Run(ctx, msg, env, nil)
		if err != nil || len(res.Actions) == 0 {
			b.Fatal(err)
		}
	}
}

// bodyScript is benchScript with the rule delivery's benchmark ends with: a body test
// (RFC 5173), which reads and decodes the body.
const bodyScript = `require "body";
` + benchScript + `if body :contains "unsubscribe" { addflag "bulk"; }
if body :raw :contains "unsubscribe" { addflag "bulk"; }
`

// BenchmarkRunBody is BenchmarkRun with body tests, on a message parsed per run as the
// delivery does (NewMessage then Run): what a body test costs per delivered message.
func BenchmarkRunBody(b *testing.B) {
	s, err := Compile([]byte(bodyScript), Options{})
	if err != nil {
		b.Fatal(err)
	}
	raw := benchMessage()
	env := Envelope{From: "alice@example.org", To: "bob@example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		res, err := s.Run(ctx, NewMessage(raw), env, nil)
		if err != nil || len(res.Actions) == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompile measures compiling the same script (what Cache saves).
func BenchmarkCompile(b *testing.B) {
	src := []byte(benchScript)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(src, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	c := NewCache(Options{}, 0)
	src := []byte(benchScript)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Compile(src); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentRuns: a compiled script is shared by concurrent deliveries (run with
// -race).
func TestConcurrentRuns(t *testing.T) {
	s, err := Compile([]byte(benchScript), Options{})
	if err != nil {
		t.Fatal(err)
	}
	msg := NewMessage(benchMessage())
	want := ""
	done := make(chan string)
	for range 4 {
		go func() {
			var last string
			for range 50 {
				res, err := s.Run(context.Background(), msg, Envelope{From: "alice@example.org", To: "bob@example.com"}, nil)
				if err != nil {
					last = err.Error()
					break
				}
				last = res.String()
			}
			done <- last
		}()
	}
	for range 4 {
		got := <-done
		if want == "" {
			want = got
		}
		if got != want {
			t.Errorf("concurrent runs differ:\n%s\n%s", got, want)
		}
	}
}
