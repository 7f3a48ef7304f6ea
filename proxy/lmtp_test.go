package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/proxy"
)

// startLMTP runs the proxy's LMTP listener in front of two real Dovecot LMTP servers
// (alice on d1, bob and erin on d2) and a back-end that is down (carol); dave is in no
// directory.
func startLMTP(t *testing.T) (addr string, d1, d2 *dovecottest.Dovecot) {
	t.Helper()
	return startLMTPWith(t, func(*proxy.Config) {})
}

// startLMTPWith is startLMTP with changes to the proxy's configuration.
func startLMTPWith(t *testing.T, conf func(*proxy.Config)) (addr string, d1, d2 *dovecottest.Dovecot) {
	t.Helper()
	d1 = dovecottest.Start(t, "alice@example.org")
	d2 = dovecottest.Start(t, "bob@example.org", "erin@example.org")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	dir := dirMap{
		"alice@example.org": {Address: "alice@example.org", MailHost: "d1"},
		"bob@example.org":   {Address: "bob@example.org", MailHost: "d2"},
		"erin@example.org":  {Address: "erin@example.org", MailHost: "d2"},
		"carol@example.org": {Address: "carol@example.org", MailHost: "gone"},
		"mover@example.org": {Address: "mover@example.org", MailHost: "d1", State: "moving"},
	}
	tc, _ := mailboxtest.Cert(t)
	cfg := proxy.Config{TLSConfig: tc, HealthInterval: -1, Backends: map[string]proxy.Backend{
		"d1":   {LMTP: d1.LMTPAddr()},
		"d2":   {LMTP: d2.LMTPAddr()},
		"gone": {LMTP: closed.Addr().String()},
	}}
	conf(&cfg)
	px, err := proxy.New(cfg, proxy.Deps{Auth: mailboxtest.Users, Directory: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go px.ServeLMTP(ln)
	return ln.Addr().String(), d1, d2
}

// TestLMTP delivers one message to recipients on two back-ends, one that is down, one
// unknown and one being moved, with portcullis's own LMTP client: each lands on its own
// back-end exactly once, the down back-end's recipient gets 451 4.3.0 alone.
func TestLMTP(t *testing.T) {
	addr, d1, d2 := startLMTP(t)
	c, err := lmtp.New(lmtp.Config{LocalName: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.NewReader("From: x@example.net\r\nSubject: lmtp proxy\r\n\r\nhello\r\n.leading dot\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rcpts := []string{"alice@example.org", "carol@example.org", "bob@example.org", "dave@example.org", "erin@example.org", "mover@example.org"}
	res, err := c.Deliver(ctx, addr, "x@example.net", rcpts, msg, msg.Size())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"alice@example.org": "250", "carol@example.org": "451 4.3.0", "bob@example.org": "250",
		"dave@example.org": "550 5.1.1", "erin@example.org": "250", "mover@example.org": "451 4.2.1",
	}
	for _, r := range res {
		if got := fmt.Sprintf("%d %s", r.Code, r.Enhanced); !strings.HasPrefix(got, want[r.Rcpt]) {
			t.Errorf("%s: %d %s %q, want %s", r.Rcpt, r.Code, r.Enhanced, r.Reply, want[r.Rcpt])
		}
	}
	for dc, users := range map[*dovecottest.Dovecot][]string{d1: {"alice@example.org"}, d2: {"bob@example.org", "erin@example.org"}} {
		for _, u := range users {
			msgs := dc.Messages(t, u)
			if len(msgs) != 1 || !strings.Contains(string(msgs[0]), "\r\n.leading dot") && !strings.Contains(string(msgs[0]), "\n.leading dot") {
				t.Errorf("%s: %d messages %q", u, len(msgs), msgs)
			}
		}
	}
	if n := d1.Count("bob@example.org") + d2.Count("alice@example.org"); n != 0 {
		t.Errorf("%d messages on the wrong back-end", n)
	}
}

// TestLMTPProtocol: the session's refusals, line by line.
func TestLMTPProtocol(t *testing.T) {
	addr, _, _ := startLMTP(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: conn, r: bufio.NewReader(conn)}
	cl.expect("220 ")
	cl.send("MAIL FROM:<x@example.net>")
	cl.expect("503")
	cl.send("LHLO mx")
	cl.expect("250 SIZE")
	cl.send("MAIL FROM:<x@example.net>")
	cl.expect("250")
	cl.send("DATA")
	cl.expect("503")
	cl.send("RCPT TO:<carol@example.org>")
	cl.expect("451 4.3.0")
	cl.send("DATA")
	cl.expect("503")
	cl.send("RSET")
	cl.expect("250")
	cl.send("EHLO mx")
	cl.expect("500")
	cl.send("QUIT")
	cl.expect("221")
}

// TestLMTPLongLineNotEnd: a body line longer than the proxy's read buffer whose last
// bytes are ".\r\n" is not the end of the data (RFC 5321 §4.1.1.4: the end is
// <CRLF>.<CRLF>, a dot alone on a line). Taking it for the end would let a message's
// content be read as LMTP commands (smuggling a message to another user) and desync the
// back-end, which still reads data.
func TestLMTPLongLineNotEnd(t *testing.T) {
	addr, d1, d2 := startLMTP(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: conn, r: bufio.NewReader(conn)}
	cl.expect("220 ")
	cl.send("LHLO mx")
	cl.expect("250 SIZE")
	cl.send("MAIL FROM:<x@example.net>")
	cl.expect("250")
	cl.send("RCPT TO:<alice@example.org>")
	cl.expect("250")
	cl.send("DATA")
	cl.expect("354")
	cl.send("Subject: long line\r\n\r\n" + strings.Repeat("A", 4096) + ".")
	cl.send("RSET\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n.")
	cl.expect("250")
	cl.send("QUIT")
	cl.expect("221")
	if n := d2.Count("bob@example.org"); n != 0 {
		t.Errorf("bob got %d smuggled messages", n)
	}
	msgs := d1.Messages(t, "alice@example.org")
	if len(msgs) != 1 || !strings.Contains(string(msgs[0]), "smuggled") || !strings.Contains(string(msgs[0]), strings.Repeat("A", 4096)+".") {
		t.Errorf("alice: %d messages %.200q", len(msgs), msgs)
	}
}

// TestLMTPExtension: user+tag@domain, which the directory knows as the user, reaches the
// user's back-end with its tag (as delivery/mailhost, the front-ends' delivery, sends
// it), instead of 550 5.1.1 and a bounce.
func TestLMTPExtension(t *testing.T) {
	addr, _, d2 := startLMTP(t)
	c, err := lmtp.New(lmtp.Config{LocalName: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.NewReader("From: x@example.net\r\nSubject: tagged\r\n\r\nhello\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Deliver(ctx, addr, "x@example.net", []string{"bob+news@example.org", "nobody+x@example.org"}, msg, msg.Size())
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Code != 250 || res[1].Code != 550 {
		t.Fatalf("replies %d %q, %d %q; want 250 and 550", res[0].Code, res[0].Reply, res[1].Code, res[1].Reply)
	}
	if n := d2.Count("bob@example.org"); n != 1 {
		t.Fatalf("bob has %d messages", n)
	}
}

// lmtpClient connects to the proxy's LMTP listener and says LHLO.
func lmtpClient(t *testing.T, addr string, timeout time.Duration) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(timeout))
	cl := &client{t: t, c: conn, r: bufio.NewReader(conn)}
	cl.expect("220 ")
	cl.send("LHLO mx")
	cl.expect("250 SIZE")
	return cl
}

// TestLMTPSizeParam: a MAIL command announcing more than the proxy's maximum message size
// is refused with 552 5.3.4 before the message is sent (RFC 1870 §6), a malformed SIZE
// with 501; a size within the limit is taken.
func TestLMTPSizeParam(t *testing.T) {
	addr, _, _ := startLMTPWith(t, func(c *proxy.Config) { c.MaxMessageSize = 1000 })
	cl := lmtpClient(t, addr, 30*time.Second)
	for _, tc := range []struct{ arg, want string }{
		{"SIZE=1001", "552 5.3.4"},
		{"BODY=8BITMIME SIZE=99999999999999999999999", "552 5.3.4"},
		{"SIZE=x1", "501"},
		{"SIZE=-1", "501"},
		{"SIZE=", "501"},
		{"SIZE=1000", "250"},
	} {
		cl.send("MAIL FROM:<x@example.net> " + tc.arg)
		if l := cl.expect(""); !strings.HasPrefix(l, tc.want) {
			t.Errorf("MAIL %s: %q, want %s", tc.arg, l, tc.want)
		}
	}
	cl.send("RCPT TO:<alice@example.org>")
	cl.expect("250")
}

// TestLMTPGreetingTimeout: a back-end that accepts the connection but never greets (a
// hung machine) costs its recipient ConnectTimeout and a 451 4.3.0, not the 5 minutes
// of a command timeout; the other recipients are delivered.
func TestLMTPGreetingTimeout(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	addr, d1, _ := startLMTPWith(t, func(c *proxy.Config) {
		c.ConnectTimeout = 500 * time.Millisecond
		c.Backends["gone"] = proxy.Backend{LMTP: hung.Addr().String()}
	})
	cl := lmtpClient(t, addr, 15*time.Second)
	cl.send("MAIL FROM:<x@example.net>")
	cl.expect("250")
	start := time.Now()
	cl.send("RCPT TO:<carol@example.org>")
	cl.expect("451 4.3.0")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the hung back-end held the recipient %v", d)
	}
	cl.send("RCPT TO:<alice@example.org>")
	cl.expect("250")
	cl.send("DATA")
	cl.expect("354")
	cl.send("Subject: hung\r\n\r\nhi\r\n.")
	cl.expect("250")
	if n := d1.Count("alice@example.org"); n != 1 {
		t.Errorf("alice has %d messages", n)
	}
}

// TestLMTPSpool: a message larger than what the proxy keeps in memory is spooled to an
// unlinked file in SpoolDir while it is received (seen in this process's open files),
// and reaches the back-end whole.
func TestLMTPSpool(t *testing.T) {
	spool := t.TempDir()
	addr, d1, _ := startLMTPWith(t, func(c *proxy.Config) { c.SpoolDir = spool })
	cl := lmtpClient(t, addr, time.Minute)
	cl.send("MAIL FROM:<x@example.net>")
	cl.expect("250")
	cl.send("RCPT TO:<alice@example.org>")
	cl.expect("250")
	cl.send("DATA")
	cl.expect("354")
	line := strings.Repeat("0123456789", 9) + "\r\n"
	chunk := "Subject: big\r\n\r\n" + strings.Repeat(line, 5000) // ~460 KB
	if _, err := cl.c.Write([]byte(chunk)); err != nil {
		t.Fatal(err)
	}
	spooled := func() bool {
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			target, err := os.Readlink("/proc/self/fd/" + fd.Name())
			if err == nil && strings.HasPrefix(target, spool+"/") && strings.HasSuffix(target, " (deleted)") {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for !spooled() {
		if time.Now().After(deadline) {
			t.Fatal("no unlinked spool file while a 460 KB message is received")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cl.c.Write([]byte(strings.Repeat(line, 5000) + ".\r\n")); err != nil {
		t.Fatal(err)
	}
	cl.expect("250")
	msgs := d1.Messages(t, "alice@example.org")
	if len(msgs) != 1 || strings.Count(string(msgs[0]), "0123456789") != 90000 {
		t.Fatalf("alice: %d messages", len(msgs))
	}
	if entries, _ := os.ReadDir(spool); len(entries) != 0 {
		t.Errorf("left in the spool: %v", entries)
	}
}

// TestLMTPSpoolFailure: when the spool cannot be written (here a SpoolDir that does not
// exist; in production a full disk), the rest of the data is still read to its final
// dot and each recipient gets 451 4.3.0 (RFC 2033 §4.2). Replying at the failure, in the
// middle of the data, had the rest of the message read as commands: a body could
// smuggle a message to another user.
func TestLMTPSpoolFailure(t *testing.T) {
	addr, d1, d2 := startLMTPWith(t, func(c *proxy.Config) {
		c.SpoolDir = filepath.Join(t.TempDir(), "missing")
	})
	cl := lmtpClient(t, addr, time.Minute)
	cl.send("MAIL FROM:<x@example.net>")
	cl.expect("250")
	cl.send("RCPT TO:<alice@example.org>")
	cl.expect("250")
	cl.send("DATA")
	cl.expect("354")
	line := strings.Repeat("0123456789", 9) + "\r\n"
	body := "Subject: big\r\n\r\n" + strings.Repeat(line, 4000) + // ~360 KB: spooled
		"RSET\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nsmuggled\r\n.\r\n"
	if _, err := cl.c.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if l := cl.expect(""); !strings.HasPrefix(l, "451 4.3.0") {
		t.Fatalf("after the data: %q, want 451 4.3.0", l)
	}
	cl.send("QUIT")
	if l := cl.expect(""); !strings.HasPrefix(l, "221") {
		t.Errorf("QUIT: %q, want 221 (the message's lines were read as commands)", l)
	}
	if n := d2.Count("bob@example.org") + d1.Count("alice@example.org"); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
}
