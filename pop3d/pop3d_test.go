package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

type client struct {
	t    testing.TB
	conn net.Conn
	r    *textproto.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, conn: c, r: textproto.NewReader(bufio.NewReader(c))}
	cl.expect("+OK")
	return cl
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l, err := c.r.ReadLine()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	fmt.Fprintf(c.conn, "%s\r\n", line)
	return c.expect(prefix)
}

func (c *client) multi() []string {
	c.t.Helper()
	ls, err := c.r.ReadDotLines()
	if err != nil {
		c.t.Fatal(err)
	}
	return ls
}

func (c *client) starttls(cfg *tls.Config) {
	c.t.Helper()
	c.cmd("STLS", "+OK")
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn = tc
	c.r = textproto.NewReader(bufio.NewReader(tc))
}

const msg1 = "From: x@example.org\r\nSubject: one\r\n\r\nline1\r\n.dotted line\r\nline3\r\n"
const msg2 = "Subject: two\r\n\r\nbody2\r\n"

func TestSessionOverSTLS(t *testing.T) {
	e := start(t, Config{})
	e.deliver(t, "alice@example.org", msg1)
	e.deliver(t, "alice@example.org", msg2)
	c := dial(t, e.addr)
	c.cmd("CAPA", "+OK")
	caps := strings.Join(c.multi(), ",")
	if !strings.Contains(caps, "STLS") || strings.Contains(caps, "USER") || strings.Contains(caps, "SASL") {
		t.Fatalf("plaintext CAPA %s", caps)
	}
	c.cmd("USER alice@example.org", "-ERR [AUTH]")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00secret pw")), "-ERR [AUTH]")
	c.cmd("STAT", "-ERR")
	c.starttls(&tls.Config{InsecureSkipVerify: true})
	c.cmd("CAPA", "+OK")
	caps = strings.Join(c.multi(), ",")
	if strings.Contains(caps, "STLS") || !strings.Contains(caps, "USER") || !strings.Contains(caps, "SASL PLAIN") {
		t.Fatalf("TLS CAPA %s", caps)
	}
	c.cmd("USER alice@example.org", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH]")
	c.cmd("USER alice@example.org", "+OK")
	c.cmd("PASS secret pw", "+OK maildrop has 2")
	if l := c.cmd("STAT", "+OK"); l != fmt.Sprintf("+OK 2 %d", len(msg1)+len(msg2)) {
		t.Fatalf("STAT %q", l)
	}
	c.cmd("LIST", "+OK")
	if ls := c.multi(); len(ls) != 2 || ls[0] != fmt.Sprintf("1 %d", len(msg1)) {
		t.Fatalf("LIST %v", ls)
	}
	c.cmd("UIDL", "+OK")
	uids := c.multi()
	if len(uids) != 2 || !strings.HasPrefix(uids[0], "1 ") || len(uids[0]) > 72 {
		t.Fatalf("UIDL %v", uids)
	}
	if l := c.cmd("UIDL 2", "+OK"); l != "+OK "+uids[1] {
		t.Fatalf("UIDL 2 %q", l)
	}
	c.cmd("TOP 1 1", "+OK")
	if got := strings.Join(c.multi(), "|"); got != "From: x@example.org|Subject: one||line1" {
		t.Fatalf("TOP %q", got)
	}
	// Dot-stuffing is undone by ReadDotLines; check it raw.
	fmt.Fprintf(c.conn, "RETR 1\r\n")
	c.expect("+OK")
	var raw []string
	for {
		l, _ := c.r.ReadLine()
		raw = append(raw, l)
		if l == "." {
			break
		}
	}
	if strings.Join(raw, "|") != "From: x@example.org|Subject: one||line1|..dotted line|line3|." {
		t.Fatalf("RETR raw %q", raw)
	}
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 1", "-ERR")
	c.cmd("RETR 1", "-ERR")
	c.cmd("STAT", fmt.Sprintf("+OK 1 %d", len(msg2)))
	c.cmd("RSET", "+OK")
	c.cmd("STAT", "+OK 2")
	c.cmd("DELE 2", "+OK")
	c.cmd("RETR 3", "-ERR")
	c.cmd("RETR x", "-ERR")
	c.cmd("NOOP", "+OK")
	c.cmd("QUIT", "+OK")

	msgs := mailboxtest.Inbox(t, e.store, "alice@example.org")
	if len(msgs) != 1 || msgs[0].UID != 1 || !strings.Contains(strings.Join(msgs[0].Flags, " "), `\Seen`) {
		t.Fatalf("after QUIT: %+v", msgs)
	}
}

func TestAuthPlainAndLock(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "bob@example.org", msg2)
	c := dial(t, e.addr)
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("\x00bob@example.org\x00pw2")), "+OK maildrop has 1")
	// A second POP3 session on the same maildrop is refused (RFC 1939 §8)...
	c2 := dial(t, e.addr)
	c2.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00bob@example.org\x00pw2")), "-ERR [IN-USE]")
	// ...but IMAP-side changes go on: expunge the message behind the POP3 session.
	u, _ := e.store.Open(context.Background(), "bob@example.org")
	defer u.Release()
	mb, _ := u.Mailbox(context.Background(), "INBOX")
	if _, err := u.Remove(context.Background(), mb, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	c.cmd("RETR 1", "-ERR message was deleted")
	// QUIT frees the maildrop before its reply: the next login right after it succeeds.
	c.cmd("QUIT", "+OK")
	c2.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00bob@example.org\x00pw2")), "+OK")
	c3 := dial(t, e.addr)
	c3.cmd("AUTH PLAIN", "+ ")
	c3.cmd("*", "-ERR")
	c3.cmd("AUTH CRAM-MD5", "-ERR")
}

func TestLimits(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxLineSize: 100, MaxErrors: 3, IdleTimeout: 300 * time.Millisecond})
	c := dial(t, e.addr)
	c.cmd("USER "+strings.Repeat("a", 200), "-ERR line too long")
	c.cmd("CAPA", "+OK")
	c.multi()
	c = dial(t, e.addr)
	c.cmd("XX", "-ERR")
	c.cmd("BOGUS", "-ERR")
	c.cmd("RETR 1", "-ERR")
	c.expect("-ERR too many errors")
	c = dial(t, e.addr)
	time.Sleep(500 * time.Millisecond)
	if _, err := c.r.ReadLine(); err == nil {
		t.Fatal("idle session not closed")
	}
}

func TestPythonPoplib(t *testing.T) {
	py := testenv.Program(t, "python3")
	e := start(t, Config{})
	e.deliver(t, "alice@example.org", msg1)
	e.deliver(t, "alice@example.org", msg2)
	host, port, _ := net.SplitHostPort(e.addr)
	script := `
import poplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=10)
caps = p.capa()
assert 'STLS' in caps and 'USER' not in caps, caps
p.stls(ctx)
assert 'USER' in p.capa()
p.user('alice@example.org'); p.pass_('secret pw')
n, size = p.stat()
assert n == 2, n
resp, lines, octets = p.retr(1)
assert lines[4] == b'.dotted line', lines
assert p.top(2, 0)[1] == [b'Subject: two', b''], p.top(2, 0)
assert len(p.uidl()[1]) == 2
p.dele(2)
print(p.quit().decode())
`
	cmd := exec.Command(py, "-c", script, host, port, e.cert)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	msgs := mailboxtest.Inbox(t, e.store, "alice@example.org")
	if len(msgs) != 1 || msgs[0].UID != 1 {
		t.Fatalf("after poplib: %+v", msgs)
	}
}

func TestFetchmailSTLS(t *testing.T) {
	fm := testenv.Program(t, "fetchmail")
	e := start(t, Config{})
	for i := 0; i < 3; i++ {
		e.deliver(t, "alice@example.org", fmt.Sprintf("From: x@example.org\r\nTo: alice@example.org\r\nSubject: fm %d\r\nMessage-ID: <%d@x>\r\n\r\nbody %d\r\n", i, i, i))
	}
	host, port, _ := net.SplitHostPort(e.addr)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	rc := filepath.Join(dir, "fetchmailrc")
	// sslproto without ssl: fetchmail must use STLS and refuse plaintext (RFC 2595).
	os.WriteFile(rc, []byte(fmt.Sprintf(`poll %s service %s protocol POP3 auth password timeout 20:
  user "alice@example.org" password "secret pw" sslproto "TLS1.2+" sslcertck sslcommonname localhost sslcertfile %q
  mda "/bin/sh -c 'cat >> %s'"
`, host, port, e.cert, out)), 0o600)
	cmd := exec.Command(fm, "-f", rc, "--nodetach", "--nosyslog", "-v", "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = ctx
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "STLS") {
		t.Fatalf("fetchmail did not use STLS:\n%s", b)
	}
	got, _ := os.ReadFile(out)
	for i := 0; i < 3; i++ {
		if !strings.Contains(string(got), fmt.Sprintf("Subject: fm %d", i)) {
			t.Fatalf("message %d missing in fetchmail output:\n%s\n%s", i, got, b)
		}
	}
	msgs := mailboxtest.Inbox(t, e.store, "alice@example.org")
	if len(msgs) != 0 {
		t.Fatalf("fetchmail left %d messages (it deletes by default)", len(msgs))
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		name string
		args int
	}{
		{"stat", true, "STAT", 0},
		{"LIST 1", true, "LIST", 1},
		{"PASS with spaces  in it", true, "PASS", 1},
		{"TOP 1 10", true, "TOP", 2},
		{"", false, "", 0},
		{"ST", false, "", 0},
		{"STATS", false, "", 0},
		{"LIST  1", false, "", 0},
		{"LI5T", false, "", 0},
		{"LIST 1\x00", false, "", 0},
		{"A B C D E F", false, "", 0},
	} {
		c, err := ParseCommand(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (c.Name != tc.name || len(c.Args) != tc.args)) {
			t.Errorf("ParseCommand(%q) = %+v, %v", tc.in, c, err)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"STAT", "LIST 1", "PASS a b", "TOP 1 10", "AUTH PLAIN =", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommand(s)
		if err != nil {
			return
		}
		if len(c.Name) < 3 || len(c.Name) > 4 || len(c.Args) > maxArgs {
			t.Fatalf("accepted %+v", c)
		}
		for _, a := range c.Args {
			if a == "" || strings.ContainsAny(a, "\r\n\x00") {
				t.Fatalf("bad arg %q", a)
			}
		}
		for _, a := range c.Args { // must not panic, and accept only digits
			if n, err := msgNumber(a); err == nil && (n < 1 || strings.Trim(a, "0123456789") != "") {
				t.Fatalf("message number %q = %d", a, n)
			}
			if n, err := lineCount(a); err == nil && (n < 0 || strings.Trim(a, "0123456789") != "") {
				t.Fatalf("line count %q = %d", a, n)
			}
		}
	})
}

// A message written by another maildir program with bare LF line ends is listed with the
// size it has on the wire (CRLF).
func TestBareLFSizes(t *testing.T) {
	e := start(t, Config{Trusted: true})
	u, err := e.store.Open(context.Background(), "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	lf := "Subject: lf\n\nline one\n.line two\n"
	var root string
	filepath.Walk(e.store.Config().Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() && filepath.Base(p) == "Maildir" {
			root = p
		}
		return nil
	})
	if err := os.WriteFile(filepath.Join(root, "new", "1700000000.M1P1Q1.other"), []byte(lf), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, e.addr)
	c.cmd("USER bob@example.org", "+OK")
	c.cmd("PASS pw2", "+OK maildrop has 1")
	want := len(lf) + strings.Count(lf, "\n")
	c.cmd("LIST 1", fmt.Sprintf("+OK 1 %d", want))
	fmt.Fprintf(c.conn, "RETR 1\r\n")
	c.expect(fmt.Sprintf("+OK %d octets", want))
	got := 0
	for {
		l, err := c.r.R.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == ".\r\n" {
			break
		}
		got += len(l)
	}
	if got != want+1 { // +1: the dot-stuffed ".line two"
		t.Fatalf("RETR sent %d octets, LIST said %d (+1 dot)", got, want)
	}
}

func TestImplicitTLS(t *testing.T) {
	e := start(t, Config{})
	e.deliver(t, "bob@example.org", msg2)
	tc, br, greeting := mailboxtest.DialTLS(t, mailboxtest.ServeTLS(t, e.srv, e.tls))
	if !strings.HasPrefix(greeting, "+OK") {
		t.Fatalf("greeting %q", greeting)
	}
	c := &client{t: t, conn: tc, r: textproto.NewReader(br)}
	c.cmd("CAPA", "+OK")
	if caps := strings.Join(c.multi(), ","); strings.Contains(caps, "STLS") || !strings.Contains(caps, "USER") {
		t.Fatalf("POP3S CAPA %s", caps)
	}
	c.cmd("USER bob@example.org", "+OK")
	c.cmd("PASS pw2", "+OK maildrop has 1")
	c.cmd("QUIT", "+OK")
}

// TOP counts lines, not reads: a line longer than the server's 32 KiB read buffer is one
// line, and a CRLF that arrives alone in the next read is not the header's end.
func TestTopLongLines(t *testing.T) {
	e := start(t, Config{Trusted: true})
	hdr := "Subject: long header\r\nX-Long: " + strings.Repeat("h", 32760) + "\r\nX-After: yes\r\n\r\nb1\r\nb2\r\n"
	body := "Subject: long body\r\n\r\n" + strings.Repeat("b", 70000) + "\r\nsecond\r\nthird\r\n"
	e.deliver(t, "bob@example.org", hdr)
	e.deliver(t, "bob@example.org", body)
	c := dial(t, e.addr)
	c.cmd("USER bob@example.org", "+OK")
	c.cmd("PASS pw2", "+OK")
	c.cmd("TOP 1 0", "+OK")
	if ls := c.multi(); len(ls) != 4 || ls[2] != "X-After: yes" || ls[3] != "" {
		t.Errorf("TOP 1 0: %d lines %.40q, want the 3 header lines and the blank one", len(ls), ls)
	}
	c.cmd("TOP 2 2", "+OK")
	if ls := c.multi(); len(ls) != 4 || len(ls[2]) != 70000 || ls[3] != "second" {
		t.Errorf("TOP 2 2: %d lines, want 4", len(ls))
	}
	c.cmd("QUIT", "+OK")
}

// Bad input gets -ERR and the session goes on: lines far over the limit (read to their
// end and dropped, before and after login and inside AUTH), unknown commands, control
// characters, and message numbers and line counts out of any range.
func TestBadInputSurvives(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxErrors: 100, MaxLoginCommands: 100})
	e.deliver(t, "bob@example.org", msg1)
	c := dial(t, e.addr)
	huge := strings.Repeat("x", 1<<20)
	for _, l := range []string{"USER " + huge, huge, "XYZZY", "FOO bar", "", " ", "STAT\x00", "QUIT\x7f",
		"AUTH", "AUTH X-UNKNOWN", "RETR 1", "PASS x", "APOP bob@example.org 0123456789abcdef"} {
		fmt.Fprintf(c.conn, "%s\r\n", l)
		if l == "AUTH" {
			c.expect("+OK")
			c.multi()
			continue
		}
		if got := c.expect("-ERR"); l == huge && got != "-ERR line too long" {
			t.Errorf("%.20s...: %q", l, got)
		}
	}
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd(huge, "-ERR line too long")
	c.cmd("USER bob@example.org", "+OK")
	c.cmd("PASS pw2", "+OK maildrop has 1")
	for _, l := range []string{huge, "TOP 1 99999999999999999999", "TOP 99999999999 1", "TOP 1 -1",
		"TOP 1 +1", "TOP 1 0x10", "TOP 1", "TOP 1 1 1", "TOP 0 0", "LIST 0", "LIST 2", "RETR -1",
		"RETR 1.0", "UIDL 1 2", "DELE 4294967297", "LIST " + strings.Repeat("9", 500), "STLS", "USER x",
		"XTND XMIT", "TOP\t1 1"} {
		fmt.Fprintf(c.conn, "%s\r\n", l)
		c.expect("-ERR")
	}
	c.cmd("LAST", "-ERR unknown command")
	c.cmd("USER x", "-ERR command not valid in this state")
	c.cmd("TOP 1 9223372036854775807", "+OK")
	if ls := c.multi(); len(ls) != 6 {
		t.Errorf("TOP with the largest count: %q", ls)
	}
	c.cmd("NOOP", "+OK")
	c.cmd("STAT", fmt.Sprintf("+OK 1 %d", len(msg1)))
	c.cmd("QUIT", "+OK")
}

// Commands pipelined after STLS in the clear are not run (CVE-2011-0411's kind of
// injection): the session ends after the +OK.
func TestSTLSPipelinedClosed(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "bob@example.org", msg2)
	c := dial(t, e.addr)
	fmt.Fprintf(c.conn, "STLS\r\nUSER bob@example.org\r\nPASS pw2\r\nDELE 1\r\nQUIT\r\n")
	c.expect("+OK")
	if l, err := c.r.ReadLine(); err == nil {
		t.Fatalf("after STLS with pipelined commands: %q", l)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(mailboxtest.Inbox(t, e.store, "bob@example.org")); n != 1 {
		t.Fatalf("the injected DELE ran: %d messages left", n)
	}
}

// A line streamed past maxDiscard ends the session (the read is bounded), before login,
// in AUTH and after login alike.
func TestLineFloodEnds(t *testing.T) {
	e := start(t, Config{Trusted: true})
	flood := strings.Repeat("y", maxDiscard+64<<10)
	for _, prefix := range []string{"", "AUTH PLAIN", "USER bob@example.org\r\nPASS pw2"} {
		c := dial(t, e.addr)
		if prefix != "" {
			fmt.Fprintf(c.conn, "%s\r\n", prefix)
			for range strings.Count(prefix, "\n") + 1 {
				c.r.ReadLine()
			}
		}
		go fmt.Fprintf(c.conn, "NOOP %s\r\n", flood)
		c.expect("-ERR line too long, bye")
		if l, err := c.r.ReadLine(); err == nil {
			t.Fatalf("after %q and a flood: %q", prefix, l)
		}
	}
}
