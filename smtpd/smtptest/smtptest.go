// Package smtptest is a line-level SMTP client for tests: it sends exactly the bytes it is
// given (pipelined commands, bare LF, broken dot-stuffing) and parses replies, which a
// well-behaved client library will not do. It also builds simple test messages.
package smtptest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Reply is one (possibly multi-line) SMTP reply.
type Reply struct {
	Code  int
	Lines []string // text of each line, without the code and separator
}

// Text returns the lines joined by newlines.
func (r Reply) Text() string { return strings.Join(r.Lines, "\n") }

// Enhanced returns the enhanced status code of the last line ("5.7.1"), or "".
func (r Reply) Enhanced() string {
	if len(r.Lines) == 0 {
		return ""
	}
	f, _, _ := strings.Cut(r.Lines[len(r.Lines)-1], " ")
	if p := strings.Split(f, "."); len(p) == 3 && len(f) >= 5 {
		return f
	}
	return ""
}

func (r Reply) String() string {
	return fmt.Sprintf("%d %s", r.Code, strings.Join(r.Lines, " / "))
}

// Has reports whether a line of the reply starts with s (an EHLO keyword such as "AUTH").
func (r Reply) Has(s string) bool {
	for _, l := range r.Lines {
		if strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(s)) {
			return true
		}
	}
	return false
}

// Conn is a raw SMTP client connection. Every read has a deadline (Timeout).
type Conn struct {
	Timeout time.Duration
	c       net.Conn
	r       *bufio.Reader
}

// Dial connects to addr. It does not read the greeting: call ReadReply.
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// DialTLS connects with implicit TLS, not verifying the certificate.
func DialTLS(addr string) (*Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// NewConn wraps an established connection (net.Pipe in fuzz tests).
func NewConn(c net.Conn) *Conn {
	return &Conn{Timeout: 10 * time.Second, c: c, r: bufio.NewReader(c)}
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.c }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Send writes s as it is (add "\r\n" yourself).
func (c *Conn) Send(s string) error {
	_ = c.c.SetWriteDeadline(time.Now().Add(c.Timeout))
	_, err := c.c.Write([]byte(s))
	return err
}

// ReadReply reads one reply.
func (c *Conn) ReadReply() (Reply, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(c.Timeout))
	var r Reply
	for range 100 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return r, fmt.Errorf("smtptest: read reply: %w (so far %v)", err, r)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return r, fmt.Errorf("smtptest: short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, fmt.Errorf("smtptest: bad reply line %q", line)
		}
		r.Code = code
		sep := byte(' ')
		if len(line) > 3 {
			sep = line[3]
		}
		r.Lines = append(r.Lines, strings.TrimSpace(line[min(4, len(line)):]))
		if sep != '-' {
			return r, nil
		}
	}
	return r, fmt.Errorf("smtptest: reply longer than 100 lines")
}

// Cmd sends line plus CRLF and reads the reply.
func (c *Conn) Cmd(line string) (Reply, error) {
	if err := c.Send(line + "\r\n"); err != nil {
		return Reply{}, err
	}
	return c.ReadReply()
}

// StartTLS sends STARTTLS and upgrades the connection (certificate not verified).
func (c *Conn) StartTLS() error {
	r, err := c.Cmd("STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return fmt.Errorf("smtptest: STARTTLS: %v", r)
	}
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	_ = tc.SetDeadline(time.Now().Add(c.Timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("smtptest: TLS handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.c = tc
	c.r = bufio.NewReader(tc)
	return nil
}

// Expect sends line (unless it is empty: then it only reads) and fails t unless the reply
// code is code. It returns the reply.
func (c *Conn) Expect(t testing.TB, line string, code int) Reply {
	t.Helper()
	var r Reply
	var err error
	if line == "" {
		r, err = c.ReadReply()
	} else {
		r, err = c.Cmd(line)
	}
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if r.Code != code {
		t.Fatalf("%q: got %v, want %d", line, r, code)
	}
	return r
}

// Transaction sends MAIL FROM:<from>, RCPT TO:<rcpt> for each of to and DATA, failing t
// unless each succeeds, then msg (CRLF line endings, as Message makes) and the final dot.
// The replies to the message, one or (LMTP) one per recipient, are the caller's to read.
func (c *Conn) Transaction(t testing.TB, from string, to []string, msg string) {
	t.Helper()
	c.Expect(t, "MAIL FROM:<"+from+">", 250)
	for _, rcpt := range to {
		c.Expect(t, "RCPT TO:<"+rcpt+">", 250)
	}
	c.Expect(t, "DATA", 354)
	if err := c.Send(msg + ".\r\n"); err != nil {
		t.Fatalf("message: %v", err)
	}
}

// Message returns a small RFC 5322 message with CRLF line endings, padded with body
// lines to at least size bytes.
func Message(from, to, subject string, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%s>\r\n\r\n",
		from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), "smtptest@example.test")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}
