package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/address"
)

// hundredRules is a typical rule file: address and HELO hygiene, relay control, policy
// results, header tests and scores, 100 rules spread over the stages.
func hundredRules() string {
	var b strings.Builder
	b.WriteString("rules:\n")
	n := 0
	add := func(stage, cond, action string) {
		n++
		fmt.Fprintf(&b, "  - name: r%d\n    stage: %s\n    if: %q\n    %s\n", n, stage, cond, action)
	}
	for i := range 10 {
		add("connect", fmt.Sprintf(`in_cidr(client.ip, "10.%d.0.0/16", "192.168.%d.0/24") && !client.trusted`, i, i), "score: 1")
		add("connect", fmt.Sprintf(`zen.listed && zen.codes[0] == "127.0.0.%d"`, i+2), "score: 2")
		add("helo", fmt.Sprintf(`!helo.fqdn && helo.name endsWith ".local%d"`, i), "score: 1")
		add("mail", fmt.Sprintf(`sender.domain == "spam%d.example" || spf.fail`, i), "score: 3")
		add("rcpt", fmt.Sprintf(`rcpt.local == "abuse%d" && !client.authenticated`, i), "tag: abuse")
		add("rcpt", fmt.Sprintf(`users.known == false && rcpt.domain == "nowhere%d.test"`, i), `reject: 550 5.1.1 "unknown"`)
		add("data", fmt.Sprintf(`msg.subject contains "viagra%d" || header("X-Mailer") startsWith "bulk%d"`, i, i), "score: 4")
		add("data", fmt.Sprintf(`msg.size > %d && msg.received_count > 20`, 1000000+i), "score: 1")
		add("data", fmt.Sprintf(`any(msg.attachments, .ext == "exe%d")`, i), `reject: 554 5.7.1 "no"`)
		add("data", fmt.Sprintf(`score > %d && msg.from_domain != "example.test"`, 50+i), "quarantine: true")
	}
	return b.String()
}

// BenchmarkRules100 measures one whole transaction (connect, helo, mail, one rcpt, data)
// through 100 rules with in-memory policies: the cost the rules add to each message.
func BenchmarkRules100(b *testing.B) {
	specs, err := ParseRules([]byte(hundredRules()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	pols := testPolicies()
	e, err := NewEngine(EngineConfig{Rules: specs, Policies: pols, LocalDomains: []string{"example.test"}})
	if err != nil {
		b.Fatal(err)
	}
	raw := []byte("From: a@example.net\r\nTo: b@example.test\r\nSubject: hello\r\nX-Mailer: test\r\nReceived: from x\r\n\r\nbody\r\n")
	ctx := context.Background()
	ip := netip.MustParseAddr("198.51.100.20")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tx := NewTransaction(Conn{IP: ip})
		e.Evaluate(ctx, StageConnect, tx)
		tx.Conn.HELO = "mail.example.net"
		e.Evaluate(ctx, StageHelo, tx)
		tx.Envelope.From = address.Parse("a@example.net")
		e.Evaluate(ctx, StageMail, tx)
		tx.Rcpt = address.Parse("b@example.test")
		e.Evaluate(ctx, StageRcpt, tx)
		tx.Envelope.Rcpts = append(tx.Envelope.Rcpts, tx.Rcpt)
		tx.Message = NewMessage(raw, time.Now())
		e.Evaluate(ctx, StageData, tx)
	}
}
