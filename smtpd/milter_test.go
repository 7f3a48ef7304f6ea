package smtpd_test

import (
	"context"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// startPeerMilter serves package milter's server (a real milter speaking protocol 6 on
// loopback) with rules of its own: the peer a site would chain (rspamd, OpenDKIM).
func startPeerMilter(t *testing.T) string {
	t.Helper()
	rules, err := policy.ParseRules([]byte(`
rules:
  - name: peer-mail
    stage: mail
    if: sender.address == "peer-refuses@else.test"
    reject: 550 5.7.1 "refused by the chained milter"
  - name: peer-rcpt
    stage: rcpt
    if: rcpt.local == "peerbusy"
    tempfail: 451 4.7.1 "chained milter says later"
  - name: peer-data
    if: msg.subject == "peer reject"
    reject: 554 5.7.1 "chained milter refuses the content"
  - name: peer-hold
    if: msg.subject == "peer hold"
    quarantine: true
  - name: peer-header
    stage: data
    if: "true"
    add_header: "X-Peer-Milter: checked {{rcpt_count}}"
`), "peer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := milter.New(milter.Config{}, milter.Deps{Engine: eng, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := milter.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func milterClient(t *testing.T, addr, action string) smtpd.Milter {
	c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:" + addr, DefaultAction: action, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, tx *policy.Transaction) (smtpd.MilterSession, policy.Decision) {
		return c.Open(ctx, tx)
	}
}

// TestMilterChain: a chained milter's refusals reach the client with its replies at
// MAIL, RCPT and DATA, its header reaches the queued message, its quarantine the
// envelope; an unreachable milter tempfails by default.
func TestMilterChain(t *testing.T) {
	peer := startPeerMilter(t)
	ts := start(t, func(cfg *smtpd.Config, d *smtpd.Deps) {
		cfg.DelayReject = ptr(false) // the MAIL refusal at MAIL
		d.Milters = []smtpd.Milter{milterClient(t, peer, "")}
	})
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.test", 250)
	r := c.Expect(t, "MAIL FROM:<peer-refuses@else.test>", 550)
	if r.Text() != "5.7.1 refused by the chained milter" {
		t.Errorf("mail: %v", r)
	}
	c.Expect(t, "MAIL FROM:<a@else.test>", 250)
	r = c.Expect(t, "RCPT TO:<peerbusy@example.test>", 451)
	if r.Text() != "4.7.1 chained milter says later" {
		t.Errorf("rcpt: %v", r)
	}
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	c.Expect(t, "DATA", 354)
	c.Expect(t, smtptest.Message("a@else.test", "bob@example.test", "hello", 100)+".", 250)
	c.Transaction(t, "a@else.test", []string{"bob@example.test"}, smtptest.Message("a@else.test", "bob@example.test", "peer reject", 100))
	if r := c.Expect(t, "", 554); r.Text() != "5.7.1 chained milter refuses the content" {
		t.Errorf("data: %v", r)
	}
	c.Transaction(t, "a@else.test", []string{"bob@example.test"}, smtptest.Message("a@else.test", "bob@example.test", "peer hold", 100))
	c.Expect(t, "", 250)
	c.Expect(t, "QUIT", 221)
	msgs := ts.q.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages queued, want 2", len(msgs))
	}
	if !strings.Contains(string(msgs[0].Data), "\r\nX-Peer-Milter: checked 1\r\n") && !strings.HasPrefix(string(msgs[0].Data), "X-Peer-Milter: checked 1\r\n") {
		t.Errorf("the chained milter's header is missing:\n%s", msgs[0].Data)
	}
	if msgs[0].Env.Quarantine || !msgs[1].Env.Quarantine {
		t.Errorf("quarantine: %v %v, want false true", msgs[0].Env.Quarantine, msgs[1].Env.Quarantine)
	}

	// An unreachable milter: tempfail by default (at connect: delay_reject answers it
	// at RCPT), nothing with default_action accept.
	down := start(t, func(_ *smtpd.Config, d *smtpd.Deps) {
		d.Milters = []smtpd.Milter{milterClient(t, "127.0.0.1:1", "")}
	})
	c = dial(t, down.addr("mx"))
	c.Expect(t, "EHLO client.test", 250)
	c.Expect(t, "MAIL FROM:<a@else.test>", 250)
	if r := c.Expect(t, "RCPT TO:<bob@example.test>", 451); r.Text() != "4.7.1 Content filter unavailable, try again later" {
		t.Errorf("milter down: %v", r)
	}
	open := start(t, func(_ *smtpd.Config, d *smtpd.Deps) {
		d.Milters = []smtpd.Milter{milterClient(t, "127.0.0.1:1", "accept")}
	})
	c = dial(t, open.addr("mx"))
	c.Expect(t, "EHLO client.test", 250)
	c.Transaction(t, "a@else.test", []string{"bob@example.test"}, smtptest.Message("a@else.test", "bob@example.test", "x", 10))
	c.Expect(t, "", 250)
}
