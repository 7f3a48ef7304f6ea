package milter_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// TestPostfix: a real Postfix with smtpd_milters runs the whole pipeline through the
// milter: refusals at MAIL, RCPT and end of message with portcullis's codes and texts,
// headers added at the top, discard and hold.
func TestPostfix(t *testing.T) {
	addr, body := startMilter(t, "127.0.0.1:0")
	pf := postfixtest.Start(t, postfixtest.Config{
		Users:  []string{"alice", "bob", "busy"},
		MainCF: fmt.Sprintf("smtpd_milters = inet:%[1]s\nnon_smtpd_milters = inet:%[1]s\nmilter_protocol = 6\nmilter_default_action = tempfail\n", addr),
	})
	c, err := smtptest.Dial(pf.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.test", 250)

	// Refused at MAIL and at RCPT with our replies.
	if r := c.Expect(t, "MAIL FROM:<spammer@bad.test>", 550); r.Text() != "5.7.1 go away" {
		t.Errorf("mail: %v", r)
	}
	c.Expect(t, "MAIL FROM:<a@sender.test>", 250)
	if r := c.Expect(t, "RCPT TO:<busy@remote.test>", 451); r.Text() != "4.7.1 try later please" {
		t.Errorf("rcpt: %v", r)
	}
	c.Expect(t, "RSET", 250)

	send := func(subject string, code int) smtptest.Reply {
		t.Helper()
		c.Transaction(t, "a@sender.test", []string{"alice@remote.test"}, smtptest.Message("a@sender.test", "alice@remote.test", subject, 200))
		return c.Expect(t, "", code)
	}
	// Accepted: the policy saw the whole message, the rules' and the policy's headers
	// are on top.
	send("hello", 250)
	msgs := pf.WaitMessages(t, "alice", 1)
	got := string(msgs[0])
	t.Logf("delivered:\n%s", got)
	// The maildir file starts with Postfix's Return-Path and Delivered-To, then ours.
	i := strings.Index(got, "\nX-Body-Check: seen\n")
	j := strings.Index(got, "\nX-Spam-Score:")
	k := strings.Index(got, "\nReceived:")
	if i < 0 || j < 0 || k < 0 || !(i < j && j < k) {
		t.Errorf("headers missing or out of order (want X-Body-Check, X-Spam-Score, then Postfix's Received):\n%s", got)
	}
	if !strings.Contains(got, "X-Spam-Score: 1.5\n") {
		t.Errorf("no X-Spam-Score: 1.5:\n%s", got)
	}
	if last := body.Load(); last == nil || !strings.Contains(string(*last), "Subject: hello\r\n") || !strings.HasSuffix(string(*last), "0123456789abcdef\r\n") {
		t.Errorf("the data stage saw %q", body.Load())
	}

	// Refused and tempfailed at end of message.
	if r := send("reject me", 554); r.Text() != "5.7.1 content refused" {
		t.Errorf("data reject: %v", r)
	}
	if r := send("later", 451); r.Text() != "4.7.2 content later" {
		t.Errorf("data tempfail: %v", r)
	}
	// Discarded: 250 to the client, nothing delivered.
	send("drop", 250)
	// Held: 250, the message waits in Postfix's hold queue.
	send("hold", 250)
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
	time.Sleep(time.Second) // let a wrongly delivered message arrive
	if n := len(pf.Messages(t, "alice")); n != 1 {
		t.Errorf("alice has %d messages, want 1 (drop and hold not delivered)", n)
	}

	// Submitted locally (sendmail, pickup): non_smtpd_milters runs the same pipeline.
	sendmail := testenv.Program(t, "sendmail")
	cmd := exec.Command(sendmail, "-C", filepath.Join(pf.Dir, "etc"), "-f", "local@sender.test", "bob@remote.test")
	cmd.Stdin = strings.NewReader("From: <local@sender.test>\nTo: <bob@remote.test>\nSubject: from pickup\n\nhello\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	bob := pf.WaitMessages(t, "bob", 1)
	if !strings.Contains(string(bob[0]), "\nX-Body-Check: seen\n") || !strings.Contains(string(bob[0]), "Subject: from pickup") {
		t.Errorf("a locally submitted message did not pass through the milter:\n%s\n%s", bob[0], pf.Log())
	}
}
