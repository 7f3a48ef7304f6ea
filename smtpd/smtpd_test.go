package smtpd_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

func sendGo(t *testing.T, addr, from string, to []string, msg string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func TestAcceptedMailReachesQueue(t *testing.T) {
	ts := start(t, nil)
	msg := smtptest.Message("sender@example.net", "bob@example.test", "hello", 4096)
	if err := sendGo(t, ts.addr("mx"), "sender@example.net", []string{"bob@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	got := ts.q.messages()
	if len(got) != 1 {
		t.Fatalf("queued %d messages, want 1", len(got))
	}
	m := got[0]
	if m.Env.From != "sender@example.net" || len(m.Env.To) != 1 || m.Env.To[0] != "bob@example.test" {
		t.Errorf("envelope %+v", m.Env)
	}
	if m.Env.ClientIP != "127.0.0.1" || m.Env.HELO != "client.example.net" || m.Env.Listener != "mx" {
		t.Errorf("envelope transport facts %+v", m.Env)
	}
	data := string(m.Data)
	if !strings.HasPrefix(data, "Received: from client.example.net (unknown [127.0.0.1])\r\n\tby mx.example.test (portcullis) with ESMTP id ") {
		t.Errorf("no Received header on top:\n%s", data[:min(300, len(data))])
	}
	if !strings.Contains(data, "\tfor <bob@example.test>;") {
		t.Errorf("Received header lacks the recipient:\n%s", data[:300])
	}
	if !strings.HasSuffix(data, msg) {
		t.Errorf("message body altered")
	}
}

func TestQueueIDInReplyAndQueueFailureTempfails(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Transaction(t, "a@example.net", []string{"bob@example.test"}, smtptest.Message("a@example.net", "bob@example.test", "x", 100))
	r := c.Expect(t, "", 250)
	if !strings.Contains(r.Text(), "queued as "+ts.q.messages()[0].ID) {
		t.Errorf("reply %v lacks the queue id", r)
	}
	ts.q.mu.Lock()
	ts.q.err = net.ErrClosed
	ts.q.mu.Unlock()
	c.Transaction(t, "a@example.net", []string{"bob@example.test"}, smtptest.Message("a@example.net", "bob@example.test", "x", 100))
	if r := c.Expect(t, "", 451); r.Enhanced() != "4.3.0" {
		t.Errorf("queue failure: %v", r)
	}
}

// stage rejections through the real policy engine and testdata/rules.yaml.
func TestRulesRejectAtEachStage(t *testing.T) {
	for _, delay := range []bool{false, true} {
		name := "immediate"
		if delay {
			name = "delay_reject"
		}
		t.Run(name, func(t *testing.T) {
			ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) { c.DelayReject = &delay })
			addr := ts.addr("mx")

			// connect: the rule matches client.ip 127.0.0.2.
			c := dialFrom(t, addr, 2)
			if !delay {
				r := c.Expect(t, "", 554)
				if !strings.Contains(r.Text(), "5.7.1 client 127.0.0.2 blocked") {
					t.Errorf("greeting %v", r)
				}
				c.Expect(t, "EHLO x.example.net", 503)
				c.Expect(t, "QUIT", 221)
			} else {
				c.Expect(t, "", 220)
				c.Expect(t, "EHLO x.example.net", 250)
				c.Expect(t, "MAIL FROM:<a@example.net>", 250)
				r := c.Expect(t, "RCPT TO:<bob@example.test>", 554)
				if r.Enhanced() != "5.7.1" || !strings.Contains(r.Text(), "client 127.0.0.2 blocked") {
					t.Errorf("delayed connect reject %v", r)
				}
			}

			// helo
			c = dial(t, addr)
			if !delay {
				c.Expect(t, "EHLO bad.helo.test", 550)
			} else {
				c.Expect(t, "EHLO bad.helo.test", 250)
				c.Expect(t, "MAIL FROM:<a@example.net>", 250)
				r := c.Expect(t, "RCPT TO:<bob@example.test>", 550)
				if !strings.Contains(r.Text(), "bad helo bad.helo.test") {
					t.Errorf("helo reject %v", r)
				}
			}
			// A new EHLO with a good name clears the helo rejection.
			c.Expect(t, "EHLO good.example.net", 250)
			c.Expect(t, "MAIL FROM:<a@example.net>", 250)
			c.Expect(t, "RCPT TO:<bob@example.test>", 250)
			c.Expect(t, "RSET", 250)

			// mail
			if !delay {
				r := c.Expect(t, "MAIL FROM:<x@spammer.test>", 553)
				if r.Enhanced() != "5.7.1" {
					t.Errorf("mail reject %v", r)
				}
			} else {
				c.Expect(t, "MAIL FROM:<x@spammer.test>", 250)
				c.Expect(t, "RCPT TO:<bob@example.test>", 553)
				c.Expect(t, "RSET", 250)
			}

			// rcpt: per recipient; the good one is kept.
			c.Expect(t, "MAIL FROM:<a@example.net>", 250)
			c.Expect(t, "RCPT TO:<blocked@example.test>", 550)
			c.Expect(t, "RCPT TO:<later@example.test>", 450)
			c.Expect(t, "RCPT TO:<bob@example.test>", 250)
			// data
			c.Expect(t, "DATA", 354)
			c.Send(smtptest.Message("a@example.net", "bob@example.test", "SPAM", 100) + ".\r\n")
			r := c.Expect(t, "", 554)
			if r.Enhanced() != "5.7.9" || !strings.Contains(r.Text(), "spam refused") {
				t.Errorf("data reject %v", r)
			}
			if n := len(ts.q.messages()); n != 0 {
				t.Errorf("%d messages queued, want 0", n)
			}
		})
	}
}

// The same rules seen by go-smtp's client (delay_reject on: connect, helo and mail
// rejections arrive at RCPT).
func TestRulesWithGoClient(t *testing.T) {
	ts := start(t, nil)
	addr := ts.addr("mx")
	for _, tc := range []struct {
		from, to, subject string
		code              int
		enhanced          smtp.EnhancedCode
	}{
		{"x@spammer.test", "bob@example.test", "hi", 553, smtp.EnhancedCode{5, 7, 1}},
		{"a@example.net", "blocked@example.test", "hi", 550, smtp.EnhancedCode{5, 7, 1}},
		{"a@example.net", "later@example.test", "hi", 450, smtp.EnhancedCode{4, 7, 1}},
		{"a@example.net", "bob@example.test", "SPAM", 554, smtp.EnhancedCode{5, 7, 9}},
		{"a@example.net", "x@other.test", "hi", 554, smtp.EnhancedCode{5, 7, 1}},
	} {
		err := sendGo(t, addr, tc.from, []string{tc.to}, smtptest.Message(tc.from, tc.to, tc.subject, 100))
		e, ok := err.(*smtp.SMTPError)
		if !ok || e.Code != tc.code || e.EnhancedCode != tc.enhanced {
			t.Errorf("%s -> %s %q: %v, want %d %v", tc.from, tc.to, tc.subject, err, tc.code, tc.enhanced)
		}
	}
	if n := ts.q.count(); n != 0 {
		t.Errorf("queued %d", n)
	}
}

func TestDataVerdicts(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	send := func(subject string) {
		t.Helper()
		c.Transaction(t, "a@example.net", []string{"bob@example.test"}, smtptest.Message("a@example.net", "bob@example.test", subject, 100))
		c.Expect(t, "", 250)
	}
	send("discard me")
	if n := len(ts.q.messages()); n != 0 {
		t.Fatalf("discarded message queued (%d)", n)
	}
	send("quarantine me")
	send("tag me")
	got := ts.q.messages()
	if len(got) != 2 {
		t.Fatalf("queued %d, want 2", len(got))
	}
	if !got[0].Env.Quarantine || got[1].Env.Quarantine {
		t.Errorf("quarantine flags %v %v", got[0].Env.Quarantine, got[1].Env.Quarantine)
	}
	if !strings.HasPrefix(string(got[1].Data), "X-Test-Rule: tagged example.net\r\nReceived: ") {
		t.Errorf("rule header missing:\n%s", got[1].Data[:200])
	}
	if len(got[1].Env.Tags) != 1 || got[1].Env.Tags[0] != "tagged" {
		t.Errorf("tags %v", got[1].Env.Tags)
	}
}

func TestRelayControl(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	for _, rcpt := range []string{
		"<victim@other.test>",
		"<user%other.test@example.test>",
		`<"user@other.test"@example.test>`,
		"<@example.test:user@other.test>",
		"<@example.test,@mx.example.test:user@other.test>",
		"<other.test!user@example.test>",
		"<user@example.test@other.test>",
		"<user@[192.0.2.1]>",
	} {
		r, err := c.Cmd("RCPT TO:" + rcpt)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code/100 != 5 {
			t.Errorf("RCPT TO:%s accepted: %v", rcpt, r)
		} else if r.Code == 554 && r.Enhanced() != "5.7.1" {
			t.Errorf("RCPT TO:%s: %v", rcpt, r)
		}
	}
	c.Expect(t, "RCPT TO:<bob@EXAMPLE.test>", 250)
	c.Expect(t, "RCPT TO:<@mx.example.test:carol@example.test>", 250) // source route ignored
	c.Expect(t, "QUIT", 221)

	// Trusted networks may relay.
	ts2 := start(t, func(c *smtpd.Config, _ *smtpd.Deps) { c.TrustedNetworks = []string{"127.0.0.0/8"} })
	c = dial(t, ts2.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<victim@other.test>", 250)
	c.Expect(t, "RCPT TO:<user%other.test@example.test>", 250)
}

func TestUnknownRecipient(t *testing.T) {
	ts := start(t, func(_ *smtpd.Config, d *smtpd.Deps) { d.Recipients = knownRcpts{"bob": true} })
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	if r := c.Expect(t, "RCPT TO:<nobody@example.test>", 550); r.Enhanced() != "5.1.1" {
		t.Errorf("unknown user: %v", r)
	}
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
}

func TestAuth(t *testing.T) {
	ts := start(t, nil)

	// MX: no AUTH, not even after STARTTLS.
	c := dial(t, ts.addr("mx"))
	if r := c.Expect(t, "EHLO client.example.net", 250); r.Has("AUTH") || !r.Has("STARTTLS") {
		t.Errorf("mx EHLO: %v", r)
	}
	if err := c.StartTLS(); err != nil {
		t.Fatal(err)
	}
	if r := c.Expect(t, "EHLO client.example.net", 250); r.Has("AUTH") {
		t.Errorf("mx offers AUTH over TLS: %v", r)
	}
	if r, _ := c.Cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ="); r.Code/100 != 5 {
		t.Errorf("AUTH on mx: %v", r)
	}

	// Submission before STARTTLS: AUTH neither offered nor accepted, MAIL refused.
	c = dial(t, ts.addr("submission"))
	if r := c.Expect(t, "EHLO client.example.net", 250); r.Has("AUTH") {
		t.Errorf("AUTH offered without TLS: %v", r)
	}
	if r, _ := c.Cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ="); r.Code/100 != 5 {
		t.Errorf("AUTH without TLS: %v", r)
	}
	c.Expect(t, "MAIL FROM:<alice@example.test>", 530)
	if err := c.StartTLS(); err != nil {
		t.Fatal(err)
	}
	if r := c.Expect(t, "EHLO client.example.net", 250); !r.Has("AUTH PLAIN LOGIN") {
		t.Errorf("AUTH not offered over TLS: %v", r)
	}
	c.Expect(t, "MAIL FROM:<alice@example.test>", 530)
	// Wrong password, then LOGIN with the right one.
	c.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==", 535)
	c.Expect(t, "AUTH LOGIN", 334)
	c.Expect(t, "YWxpY2VAZXhhbXBsZS50ZXN0", 334) // alice@example.test
	c.Expect(t, "c2VjcmV0", 235)                 // secret
	// Authenticated: relay allowed.
	c.Transaction(t, "alice@example.test", []string{"friend@elsewhere.test"}, smtptest.Message("alice@example.test", "friend@elsewhere.test", "hi", 100))
	c.Expect(t, "", 250)
	got := ts.q.messages()
	if len(got) != 1 || got[0].Env.AuthUser != "alice@example.test" {
		t.Fatalf("queued %+v", got)
	}
	if !strings.Contains(string(got[0].Data), "with ESMTPSA id ") || !strings.Contains(string(got[0].Data), "(using TLS1.3 with cipher ") {
		t.Errorf("Received header lacks TLS/auth facts:\n%s", got[0].Data[:300])
	}

	// go-smtp's client: STARTTLS + AUTH PLAIN.
	gc, err := smtp.DialStartTLS(ts.addr("submission"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if err := gc.Auth(sasl.NewPlainClient("", "alice@example.test", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := gc.SendMail("alice@example.test", []string{"x@elsewhere.test"}, strings.NewReader(smtptest.Message("alice@example.test", "x@elsewhere.test", "go", 100))); err != nil {
		t.Fatal(err)
	}

	// Implicit TLS.
	tc, err := smtptest.DialTLS(ts.addr("submissions"))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Expect(t, "", 220)
	if r := tc.Expect(t, "EHLO client.example.net", 250); !r.Has("AUTH PLAIN LOGIN") || r.Has("STARTTLS") {
		t.Errorf("submissions EHLO: %v", r)
	}
	tc.Expect(t, "MAIL FROM:<alice@example.test>", 530)
	tc.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 235)
	tc.Expect(t, "MAIL FROM:<alice@example.test>", 250)
}

// SMTP smuggling: every way of ending the data other than <CRLF>.<CRLF>, and bare CR
// and LF anywhere, are refused; nothing that follows them can become a second message.
// Each case runs in the clear on the MX port and inside TLS on the submission port.
func TestSmugglingRefused(t *testing.T) {
	inject := "MAIL FROM:<evil@spoofed.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: injected\r\n\r\ninjected\r\n"
	for name, payload := range map[string]string{
		`\n.\n`:       "Subject: a\r\n\r\nbody\n.\n" + inject + ".\r\n",
		`\r\n.\n`:     "Subject: a\r\n\r\nbody\r\n.\n" + inject + ".\r\n",
		`\n.\r\n`:     "Subject: a\r\n\r\nbody\n.\r\n" + inject + ".\r\n",
		`\r.\r`:       "Subject: a\r\n\r\nbody\r.\r" + inject + ".\r\n",
		`\r.\r\n`:     "Subject: a\r\n\r\nbody\r.\r\n" + inject + ".\r\n",
		`\r\n\r.\r\n`: "Subject: a\r\n\r\nbody\r\n\r.\r\n" + inject + ".\r\n",
		`\r\n.\rX`:    "Subject: a\r\n\r\nbody\r\n.\r" + inject + ".\r\n",
		`\r\n.\r\r\n`: "Subject: a\r\n\r\nbody\r\n.\r\r\n" + inject + ".\r\n",
		"bare CR":     "Subject: a\r\n\r\nbo\rdy\r\n.\r\n",
		"bare LF":     "Subject: a\r\n\r\nbo\ndy\r\n.\r\n",
		"LF at start": "\nSubject: a\r\n\r\nbody\r\n.\r\n",
		"CR at end":   "Subject: a\r\n\r\nbody\r\r\n.\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			ts := start(t, nil)
			c := dial(t, ts.addr("mx"))
			c.Expect(t, "EHLO client.example.net", 250)
			smuggle(t, c, payload)
			c = dial(t, ts.addr("submission"))
			authenticate(t, c)
			smuggle(t, c, payload)
			if got := ts.q.messages(); len(got) != 0 {
				t.Errorf("queued %d messages: %q", len(got), got[0].Data)
			}
		})
	}
}

// smuggle sends payload as a message and expects 550 and the end of the session.
func smuggle(t *testing.T, c *smtptest.Conn, payload string) {
	t.Helper()
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	c.Expect(t, "DATA", 354)
	c.Send(payload)
	r := c.Expect(t, "", 550)
	if !strings.Contains(r.Text(), "bare CR or LF") {
		t.Errorf("reply %v", r)
	}
	// Then the server closes the connection (as Postfix does): nothing after the bare
	// newline is read as a command.
	if r, err := c.Cmd("NOOP"); err == nil {
		t.Errorf("session still open after a bare newline: %v", r)
	}
}

func TestOversizeAndTooManyRecipients(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) {
		c.MaxMessageSize = 10000
		c.MaxRecipients = 3
	})
	c := dial(t, ts.addr("mx"))
	if r := c.Expect(t, "EHLO client.example.net", 250); !r.Has("SIZE 10000") || !r.Has("PIPELINING") {
		t.Errorf("EHLO %v", r)
	}
	c.Expect(t, "MAIL FROM:<a@example.net> SIZE=20000", 552)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<r1@example.test>", 250)
	c.Expect(t, "RCPT TO:<r2@example.test>", 250)
	c.Expect(t, "RCPT TO:<r3@example.test>", 250)
	if r := c.Expect(t, "RCPT TO:<r4@example.test>", 452); r.Enhanced() != "4.5.3" {
		t.Errorf("too many recipients: %v", r)
	}
	c.Expect(t, "DATA", 354)
	c.Send(smtptest.Message("a@example.net", "r1@example.test", "big", 20000) + ".\r\n")
	if r := c.Expect(t, "", 552); r.Enhanced() != "5.3.4" {
		t.Errorf("oversize: %v", r)
	}
	c.Expect(t, "NOOP", 250)
	if n := len(ts.q.messages()); n != 0 {
		t.Errorf("queued %d", n)
	}
	// go-smtp's client gets the same.
	err := sendGo(t, ts.addr("mx"), "a@example.net", []string{"bob@example.test"}, smtptest.Message("a@example.net", "bob@example.test", "big", 20000))
	if e, ok := err.(*smtp.SMTPError); !ok || e.Code != 552 {
		t.Errorf("go-smtp client: %v", err)
	}
}

func TestPipelining(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	// RFC 2920: MAIL, RCPTs and DATA in one write; then two messages back to back.
	c.Send("MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<x@other.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 554, 250, 354} {
		c.Expect(t, "", want)
	}
	msg := smtptest.Message("a@example.net", "bob@example.test", "one", 200)
	c.Send(msg + ".\r\nMAIL FROM:<b@example.net>\r\nRCPT TO:<dave@example.test>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 250, 354} {
		c.Expect(t, "", want)
	}
	c.Send(smtptest.Message("b@example.net", "dave@example.test", "two", 200) + ".\r\nQUIT\r\n")
	c.Expect(t, "", 250)
	c.Expect(t, "", 221)
	got := ts.q.messages()
	if len(got) != 2 {
		t.Fatalf("queued %d, want 2", len(got))
	}
	if strings.Join(got[0].Env.To, ",") != "bob@example.test,carol@example.test" || got[1].Env.To[0] != "dave@example.test" {
		t.Errorf("envelopes %+v %+v", got[0].Env, got[1].Env)
	}
}

func TestProxyProtocol(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) {
		c.Listeners[0].ProxyProtocol = true
		c.Listeners[0].ProxyFrom = []string{"127.0.0.1/32"}
	})
	c := connect(t, ts.addr("mx"))
	c.Send("PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n")
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.example.net", 250)
	c.Transaction(t, "a@example.net", []string{"bob@example.test"}, smtptest.Message("a@example.net", "bob@example.test", "proxied", 100))
	c.Expect(t, "", 250)
	got := ts.q.messages()
	if len(got) != 1 || got[0].Env.ClientIP != "203.0.113.7" {
		t.Fatalf("client address not taken from the PROXY header: %+v", got)
	}
	if !strings.Contains(string(got[0].Data), "[203.0.113.7]") {
		t.Errorf("Received header: %s", got[0].Data[:200])
	}

	// Without a header the connection is dropped without a greeting.
	c2 := connect(t, ts.addr("mx"))
	c2.Send("EHLO client.example.net\r\n")
	if r, err := c2.ReadReply(); err == nil {
		t.Errorf("got a reply without a PROXY header: %v", r)
	}
}

func TestConnectionLimits(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) { c.MaxConnectionsPerIP = 2 })
	c1 := dial(t, ts.addr("mx"))
	dial(t, ts.addr("mx"))
	c3 := connect(t, ts.addr("mx"))
	if r := c3.Expect(t, "", 421); r.Enhanced() != "4.7.0" {
		t.Errorf("over the limit: %v", r)
	}
	c1.Expect(t, "QUIT", 221)
	waitFor(t, "a free slot", func() bool {
		c, err := smtptest.Dial(ts.addr("mx"))
		if err != nil {
			return false
		}
		defer c.Close()
		r, err := c.ReadReply()
		return err == nil && r.Code == 220
	})
}

func TestTimeoutsAndErrorLimit(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) {
		c.CommandTimeout = 300 * time.Millisecond
		c.DataTimeout = 700 * time.Millisecond
		c.MaxErrors = 3
	})
	// Idle: 421 after the command timeout.
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "", 421)

	// DATA: each write comes within the idle timeout, but the whole takes too long.
	c = dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	c.Expect(t, "DATA", 354)
	start := time.Now()
	var r smtptest.Reply
	for time.Since(start) < 3*time.Second {
		if err := c.Send("Subject: slow\r\n"); err != nil {
			break
		}
		time.Sleep(150 * time.Millisecond)
		c.Timeout = time.Millisecond
		if rr, err := c.ReadReply(); err == nil {
			r = rr
			break
		}
		c.Timeout = 10 * time.Second
	}
	if r.Code != 421 {
		t.Errorf("slow DATA: got %v after %v, want 421", r, time.Since(start))
	}

	// Errors: the fourth rejection closes the session.
	c = dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	for range 3 {
		c.Expect(t, "RCPT TO:<x@other.test>", 554)
	}
	c.Expect(t, "RCPT TO:<x@other.test>", 421)
	if _, err := c.Cmd("NOOP"); err == nil {
		t.Errorf("session still open after too many errors")
	}
}

func TestShutdownLetsTransactionFinish(t *testing.T) {
	ts := start(t, nil)
	idle := dial(t, ts.addr("mx"))
	idle.Expect(t, "EHLO idle.example.net", 250)
	busy := dial(t, ts.addr("mx"))
	busy.Expect(t, "EHLO busy.example.net", 250)
	busy.Expect(t, "MAIL FROM:<a@example.net>", 250)
	busy.Expect(t, "RCPT TO:<bob@example.test>", 250)
	busy.Expect(t, "DATA", 354)
	busy.Send("Subject: during shutdown\r\n\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	idle.Expect(t, "", 421) // idle sessions are closed at once
	busy.Send("still here\r\n.\r\n")
	busy.Expect(t, "", 250)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := len(ts.q.messages()); n != 1 {
		t.Errorf("queued %d, want 1", n)
	}
	if _, err := net.DialTimeout("tcp", ts.addr("mx"), time.Second); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
}

func TestSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	c1, err := smtpd.SelfSignedCertificate(dir, "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := smtpd.SelfSignedCertificate(dir, "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if string(c1.Certificate[0]) != string(c2.Certificate[0]) {
		t.Errorf("second call generated a new certificate instead of loading the stored one")
	}
	leaf := c2.Leaf
	if err := leaf.VerifyHostname("mx.example.test"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
}

func TestConfigErrors(t *testing.T) {
	q := newTestQueue(t)
	for name, cfg := range map[string]smtpd.Config{
		"no listeners":                      {},
		"bad mode":                          {Listeners: []smtpd.ListenerConfig{{Addr: ":0", Mode: "smtp"}}},
		"auth on mx":                        {Listeners: []smtpd.ListenerConfig{{Addr: ":0", Mode: "mx", RequireAuth: ptr(true)}}},
		"bad cidr":                          {Listeners: []smtpd.ListenerConfig{{Addr: ":0"}}, TrustedNetworks: []string{"10.0.0.0/33"}},
		"bad domain":                        {Listeners: []smtpd.ListenerConfig{{Addr: ":0"}}, LocalDomains: []string{"exa mple.test"}},
		"dup names":                         {Listeners: []smtpd.ListenerConfig{{Addr: ":0"}, {Addr: ":0"}}},
		"proxy_from without proxy_protocol": {Listeners: []smtpd.ListenerConfig{{Addr: ":0", ProxyFrom: []string{"10.0.0.0/8"}}}},
	} {
		if _, err := smtpd.New(cfg, smtpd.Deps{Spool: q}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := smtpd.New(smtpd.Config{Listeners: []smtpd.ListenerConfig{{Addr: ":0"}}}, smtpd.Deps{}); err == nil {
		t.Errorf("no queue: no error")
	}
}

// When the shutdown deadline passes, sessions still in a transaction are cut.
func TestShutdownDeadline(t *testing.T) {
	ts := start(t, nil)
	busy := dial(t, ts.addr("mx"))
	busy.Expect(t, "EHLO busy.example.net", 250)
	busy.Expect(t, "MAIL FROM:<a@example.net>", 250)
	busy.Expect(t, "RCPT TO:<bob@example.test>", 250)
	busy.Expect(t, "DATA", 354)
	busy.Send("Subject: never finished\r\n\r\n")
	ctx, cancel := contextWithTimeout(300 * time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := ts.Shutdown(ctx); err == nil {
		t.Errorf("Shutdown returned nil with a session cut")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if _, err := busy.Cmd("\r\n.\r\n"); err == nil {
		t.Errorf("session survived the shutdown deadline")
	}
	if n := ts.q.count(); n != 0 {
		t.Errorf("queued %d", n)
	}
}
