package postfixlog_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/decisionlog/postfixlog"
)

var lineRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z mx\.example\.test postfix/(smtpd|submission/smtpd|cleanup|qmgr|local|smtp|error)\[\d+\]: `)

func TestLines(t *testing.T) {
	var b bytes.Buffer
	w := postfixlog.New(&b, "mx.example.test")
	at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr("192.0.2.7")
	w.Connect(at, "s1", "mx", ip, "mail.example.net")
	base := decisionlog.Record{Time: at, Session: "s1", Listener: "mx", ClientIP: ip, ClientName: "mail.example.net", HELO: "mail.example.net",
		Sender: "a@example.net"}
	acc := base
	acc.Recipient, acc.Verdict, acc.QueueID, acc.Size, acc.MessageID = "bob@example.org", "accept", "q1", 1234, "m1@example.net"
	acc2 := acc
	acc2.Recipient = "carol@example.org"
	w.Decision("data", []decisionlog.Record{acc, acc2})
	rej := base
	rej.Recipient, rej.Verdict, rej.Reply = "x@example.org", "reject", "550 5.1.1 User unknown"
	w.Decision("rcpt", []decisionlog.Record{rej})
	w.Outcome(decisionlog.Outcome{QueueID: "q1", Recipient: "bob@example.org", Time: at.Add(1500 * time.Millisecond), Outcome: "delivered", Relay: "local", Reason: "250 2.0.0 ok"}, at, false)
	w.Outcome(decisionlog.Outcome{QueueID: "q1", Recipient: "carol@example.org", Time: at.Add(2 * time.Second), Outcome: "bounced", Reason: "550 5.1.1 (gone)"}, at, true)
	w.Outcome(decisionlog.Outcome{QueueID: "unseen", Recipient: "a@example.net", Time: at, Outcome: "delivered", Relay: "local"}, at, true)
	w.Disconnect(at.Add(3*time.Second), "s1", "mx", ip, "mail.example.net")
	want := []string{
		"postfix/smtpd[1001]: connect from mail.example.net[192.0.2.7]",
		"postfix/smtpd[1001]: q1: client=mail.example.net[192.0.2.7]",
		"postfix/cleanup[1001]: q1: message-id=<m1@example.net>",
		"postfix/qmgr[1001]: q1: from=<a@example.net>, size=1234, nrcpt=2 (queue active)",
		"postfix/smtpd[1001]: NOQUEUE: reject: RCPT from mail.example.net[192.0.2.7]: 550 5.1.1 <x@example.org>: User unknown; from=<a@example.net> to=<x@example.org> proto=ESMTP helo=<mail.example.net>",
		"postfix/local[1002]: q1: to=<bob@example.org>, relay=local, delay=1.50, delays=0/0/0/1.50, dsn=2.0.0, status=sent (250 2.0.0 ok)",
		"postfix/error[1002]: q1: to=<carol@example.org>, relay=none, delay=2.00, delays=0/0/0/2.00, dsn=5.0.0, status=bounced (550 5.1.1 [gone])",
		"postfix/qmgr[1003]: q1: removed",
		"postfix/smtpd[1001]: disconnect from mail.example.net[192.0.2.7]",
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s", b.String())
	}
	for i, l := range lines {
		if !lineRe.MatchString(l) || !strings.HasSuffix(l, " "+want[i]) {
			t.Errorf("line %d:\n got %s\nwant ... %s", i, l, want[i])
		}
	}
}

// A record's texts come from clients: whatever they hold, each event is whole lines.
func FuzzOneLinePerEvent(f *testing.F) {
	f.Add("a@b\r\nforged line", "subj\n2026-01-01T00:00:00Z host postfix/smtpd[1]: x", "554 5.7.1 no\rway")
	f.Fuzz(func(t *testing.T, sender, subject, reply string) {
		var b bytes.Buffer
		w := postfixlog.New(&b, "mx.example.test")
		r := decisionlog.Record{Session: "s", Listener: "mx", Sender: sender, Subject: subject, Reply: reply, Recipient: "x@y",
			Verdict: "quarantine", QueueID: "q"}
		w.Decision("data", []decisionlog.Record{r})
		r.Verdict, r.QueueID = "reject", ""
		w.Decision("rcpt", []decisionlog.Record{r})
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 4 {
			t.Fatalf("%d lines:\n%s", len(lines), b.String())
		}
		for _, l := range lines {
			if !lineRe.MatchString(l) {
				t.Fatalf("line %q", l)
			}
		}
	})
}

func Example() {
	var b bytes.Buffer
	w := postfixlog.New(&b, "mx.example.test")
	w.Decision("rcpt", []decisionlog.Record{{Time: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC), Session: "s1", Listener: "mx",
		ClientIP: netip.MustParseAddr("192.0.2.7"), HELO: "x", Sender: "a@example.net", Recipient: "bob@example.org",
		Verdict: "reject", Reply: "554 5.7.1 client listed"}})
	fmt.Print(b.String())
	// Output:
	// 2026-05-04T10:00:00.000000Z mx.example.test postfix/smtpd[1001]: NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 554 5.7.1 <bob@example.org>: client listed; from=<a@example.net> to=<bob@example.org> proto=ESMTP helo=<x>
}
