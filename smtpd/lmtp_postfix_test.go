package smtpd_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// A real Postfix front-end delivers to our LMTP listener (transport_maps
// lmtp:inet:HOST:PORT, as sites point Postfix at Dovecot or Cyrus): the message lands in
// the store; the unknown user is bounced with our 5.1.1 and the user over quota deferred
// with our 4.2.2, each recipient on its own.
func TestLMTPFromPostfix(t *testing.T) {
	e := startLMTP(t, 20000, nil)
	e.fill(t, "carol@example.test", 19500)
	p := postfixtest.Start(t, postfixtest.Config{})

	// postfixtest's main.cf knows nothing of us: route example.test to our listener and
	// make Postfix's master re-read main.cf (what `postfix reload` does).
	cf := filepath.Join(p.Dir, "etc", "main.cf")
	f, err := os.OpenFile(cf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("relay_domains = example.test\n" +
		"transport_maps = inline:{ example.test=lmtp:inet:" + e.addr("lmtp") + " }\n" +
		"lmtp_lhlo_name = front.example.test\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := os.ReadFile(filepath.Join(p.Dir, "spool", "pid", "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err != nil || n <= 1 {
		t.Fatalf("master.pid %q", pid)
	}
	if err := syscall.Kill(n, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "reload")

	msg := smtptest.Message("sender@example.net", "alice@example.test", "from postfix", 3000)
	err = func() error {
		c, err := smtp.Dial(p.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SendMail("sender@example.net", []string{"alice@example.test", "nobody@example.test", "carol@example.test"}, strings.NewReader(msg)); err != nil {
			return err
		}
		return c.Quit()
	}()
	if err != nil {
		t.Fatalf("submitting to Postfix: %v\n%s", err, p.Log())
	}
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		got = e.mailbox(t, "alice@example.test")
	}
	if len(got) != 1 {
		t.Fatalf("alice's INBOX has %d messages\n%s", len(got), p.Log())
	}
	for _, h := range []string{"Return-Path: <sender@example.net>\r\n", "Delivered-To: alice@example.test\r\n",
		"Received: from front.example.test", "with LMTP id ", "Subject: from postfix\r\n"} {
		if !strings.Contains(got[0], h) {
			t.Errorf("message lacks %q:\n%s", h, got[0][:min(600, len(got[0]))])
		}
	}
	// Postfix's own record of each recipient.
	waitLog(t, p, "to=<carol@example.test>")
	waitLog(t, p, "to=<alice@example.test>")
	host, port, _ := net.SplitHostPort(e.addr("lmtp"))
	relay := host + "[" + host + "]"
	log := p.Log()
	for _, want := range []string{
		"to=<alice@example.test>, relay=" + relay + ":" + port,
		"status=sent (250 2.0.0 <alice@example.test> OK delivered",
		"to=<nobody@example.test>, relay=" + relay + ":" + port,
		"status=bounced (host " + relay + " said: 550 5.1.1",
		"status=deferred (host " + relay + " said: 452 4.2.2 mailbox full (in reply to RCPT TO command)",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("Postfix log lacks %q:\n%s", want, log)
		}
	}
}

// waitLog waits until Postfix's log contains s.
func waitLog(t *testing.T, p *postfixtest.Postfix, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.Log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("Postfix log never said %q:\n%s", s, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
