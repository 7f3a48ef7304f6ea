package pop3d

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
)

// FuzzSession feeds whole client streams (pipelined commands, bare LF, NULs, lines over
// the limit, AUTH exchanges cut short) to a server over the real store on loopback: the
// session must end once the client stops sending, with every reply line a CRLF-ended
// status line or part of a multi-line answer, and never bring the server down (a panic
// in a session goroutine fails the fuzz run).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nUSER bob@example.org\r\nPASS pw2\r\nSTAT\r\nLIST\r\nUIDL\r\nTOP 1 0\r\nRETR 2\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		"USER bob@example.org\nPASS pw2\nTOP 1 99999999999999999999\nTOP 2 4\nLIST 0\nQUIT\n",
		"AUTH PLAIN\r\nAGJvYkBleGFtcGxlLm9yZwBwdzI=\r\nUIDL 2\r\nDELE 2\r\nDELE 2\r\nQUIT\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nAUTH\r\nSTLS\r\n",
		"USER bob@example.org\r\nPASS pw2\r\n" + strings.Repeat("A", 5000) + "\r\nNOOP\r\n",
		"\x00\xff\r\n\r\n \r\nUSER\r\nPASS\r\nRETR 1\r\n",
	} {
		f.Add([]byte(s))
	}
	e := start(f, Config{Trusted: true, MaxLoginCommands: -1, MaxConnectionsPerIP: -1})
	e.srv.failDelay = 0
	f.Fuzz(func(t *testing.T, in []byte) {
		// Keep bob's maildrop filled: a stream with DELE and QUIT empties it.
		if len(mailboxtest.Inbox(t, e.store, "bob@example.org")) < 3 {
			for _, m := range []string{msg1, msg2, "Subject: three\r\n\r\n.\r\n..\r\n"} {
				e.deliver(t, "bob@example.org", m)
			}
		}
		c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("session did not end after the client's input: %v\n%q", err, in)
		}
		if !bytes.HasPrefix(out, []byte("+OK ")) {
			t.Fatalf("no greeting: %q", out)
		}
		for _, l := range bytes.SplitAfter(out, []byte("\n")) {
			if len(l) > 0 && !bytes.HasSuffix(l, []byte("\r\n")) {
				t.Fatalf("reply line without CRLF: %q", l)
			}
		}
	})
}
