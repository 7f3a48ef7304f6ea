package policyd_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policyd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// TestPostfix: a real Postfix with check_policy_service after reject_unauth_destination
// delivers, rejects and tempfails with portcullis's codes and texts, and prepends the
// rules' headers.
func TestPostfix(t *testing.T) {
	rules := `
rules:
  - name: spammer
    stage: mail
    if: sender.address == "spammer@bad.test"
    reject: 550 5.7.1 "sender refused by portcullis"
  - name: busy
    stage: rcpt
    if: rcpt.local == "busy"
    tempfail: 451 4.7.1 "portcullis says later"
  - name: hold
    stage: rcpt
    if: rcpt.local == "held"
    quarantine: true
  - name: tag
    stage: rcpt
    if: rcpt.domain == "remote.test"
    add_header: "X-Portcullis: seen {{rcpt.address}} from {{client.ip}}"
`
	rs, err := policy.ParseRules([]byte(rules), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int64
	eng, err := policy.NewEngine(policy.EngineConfig{Rules: rs, Logger: slog.New(slog.DiscardHandler),
		Policies: map[string]policy.Policy{"bl": listed{netip.MustParsePrefix("192.0.2.0/24"), &runs}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := policyd.New(policyd.Config{}, policyd.Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := policyd.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	pf := postfixtest.Start(t, postfixtest.Config{
		Users:  []string{"alice", "bob", "busy", "held"},
		MainCF: fmt.Sprintf("smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:%s\n", ln.Addr()),
	})
	c, err := smtptest.Dial(pf.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.test", 250)
	// Relay is refused by Postfix itself, before the policy service is asked.
	c.Expect(t, "MAIL FROM:<a@sender.test>", 250)
	if r := c.Expect(t, "RCPT TO:<x@elsewhere.test>", 554); !strings.Contains(r.Text(), "Relay access denied") {
		t.Errorf("relay: %v", r)
	}
	c.Expect(t, "RSET", 250)

	// Accepted, with the rule's header prepended once per recipient.
	c.Transaction(t, "a@sender.test", []string{"alice@remote.test", "bob@remote.test"}, smtptest.Message("a@sender.test", "alice@remote.test", "hello", 100))
	c.Expect(t, "", 250)
	msgs := pf.WaitMessages(t, "alice", 1)
	if !strings.Contains(string(msgs[0]), "X-Portcullis: seen alice@remote.test from 127.0.0.1") ||
		!strings.Contains(string(msgs[0]), "X-Portcullis: seen bob@remote.test from 127.0.0.1") {
		t.Errorf("delivered message lacks the rules' headers:\n%s", msgs[0])
	}

	// Refused at MAIL by the rules: Postfix asks at RCPT and answers with our reply.
	c.Expect(t, "MAIL FROM:<spammer@bad.test>", 250)
	r := c.Expect(t, "RCPT TO:<alice@remote.test>", 550)
	if r.Enhanced() != "5.7.1" || !strings.HasSuffix(r.Text(), "Recipient address rejected: sender refused by portcullis") {
		t.Errorf("reject: %v", r)
	}
	c.Expect(t, "RSET", 250)

	// Tempfail for one recipient, the other accepted.
	c.Expect(t, "MAIL FROM:<a@sender.test>", 250)
	r = c.Expect(t, "RCPT TO:<busy@remote.test>", 451)
	if r.Enhanced() != "4.7.1" || !strings.HasSuffix(r.Text(), "Recipient address rejected: portcullis says later") {
		t.Errorf("tempfail: %v", r)
	}
	c.Expect(t, "RCPT TO:<bob@remote.test>", 250)
	c.Expect(t, "DATA", 354)
	if err := c.Send(smtptest.Message("a@sender.test", "bob@remote.test", "second", 10) + ".\r\n"); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, "", 250)
	// Quarantined: HOLD puts the message on Postfix's hold queue.
	c.Transaction(t, "a@sender.test", []string{"held@remote.test"}, smtptest.Message("a@sender.test", "held@remote.test", "hold me", 10))
	c.Expect(t, "", 250)
	c.Expect(t, "QUIT", 221)
	deadline := time.Now().Add(20 * time.Second)
	for {
		held, _ := filepath.Glob(filepath.Join(pf.Dir, "spool", "hold", "*"))
		if len(held) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hold queue has %d messages, want 1\n%s", len(held), pf.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	msgs = pf.WaitMessages(t, "bob", 2)
	if len(pf.Messages(t, "busy")) != 0 || len(pf.Messages(t, "held")) != 0 {
		t.Error("busy or held got a message")
	}
	if !strings.Contains(string(msgs[1]), "X-Portcullis: seen bob@remote.test") {
		t.Errorf("second message:\n%s", msgs[1])
	}
}
