package decisionlog_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/policy"
)

func TestFromTransaction(t *testing.T) {
	specs, err := policy.ParseRules([]byte(`
- name: bad_rcpt
  category: Recipient
  stage: rcpt
  if: rcpt.local == "spamtrap"
  reject: 550 5.7.1 "no"
- name: big_subject
  stage: data
  if: msg.subject contains "money"
  score: 3
  tag: [money]
`), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(policy.EngineConfig{Rules: specs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{ID: "c1", Listener: "mx", IP: netip.MustParseAddr("192.0.2.7"), Hostname: "mail.example.net", HELO: "mail.example.net"})
	tx.Envelope.From = address.Parse("Sender@Example.NET")
	tx.Rcpt = address.Parse("spamtrap@example.org")
	d := e.Evaluate(ctx, policy.StageRcpt, tx)
	r := decisionlog.FromTransaction(tx, d, "spamtrap@example.org")
	if r.Verdict != "reject" || r.Rule != "bad_rcpt" || r.Category != "Recipient" || r.Stage != "rcpt" ||
		r.ClientIP != netip.MustParseAddr("192.0.2.7") || r.ClientName != "mail.example.net" || r.Session != "c1" || r.Sender == "" {
		t.Fatalf("rcpt record %+v", r)
	}

	raw := "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.net>\r\nSubject: =?utf-8?q?Free_money_=E2=82=AC?=\r\n" +
		"Message-ID: <abc@example.net>\r\n\r\nbody\r\n"
	tx.Message = policy.NewMessage([]byte(raw), time.Now())
	d = e.Evaluate(ctx, policy.StageData, tx)
	r = decisionlog.FromTransaction(tx, d, "bob@example.org")
	if r.Verdict != "accept" || r.From != "joerg@example.net" || r.Subject != "Free money €" || r.MessageID != "abc@example.net" ||
		r.Size != int64(len(raw)) || r.Score != 3 || strings.Join(r.Tags, ",") != "money" {
		t.Fatalf("data record %+v", r)
	}

	// encoded words in other charsets than UTF-8 are decoded (RFC 2047 section 4);
	// an unknown charset leaves the text as it came
	for subject, want := range map[string]string{
		"=?iso-8859-2?q?Za=BF=F3=B3=E6?=":                "Zażółć",
		"=?windows-1251?b?z/Do4uXy?=":                    "Привет",
		"=?KOI8-R?B?8NLJ18XU?= =?iso-8859-1?q?_caf=E9?=": "Привет café",
		"=?x-unknown?q?abc?=":                            "=?x-unknown?q?abc?=",
	} {
		tx.Message = policy.NewMessage([]byte("Subject: "+subject+"\r\n\r\nbody\r\n"), time.Now())
		if r := decisionlog.FromTransaction(tx, d, "bob@example.org"); r.Subject != want {
			t.Errorf("Subject %s: %q, want %q", subject, r.Subject, want)
		}
	}

	// header texts are one line, valid UTF-8, bounded
	raw = "Subject: " + strings.Repeat("x", 2000) + "\r\n\tmore\xff\r\n\r\n"
	tx.Message = policy.NewMessage([]byte(raw), time.Now())
	r = decisionlog.FromTransaction(tx, d, "bob@example.org")
	if len(r.Subject) > 500 || strings.ContainsAny(r.Subject, "\r\n") {
		t.Fatalf("subject %q", r.Subject)
	}
}
