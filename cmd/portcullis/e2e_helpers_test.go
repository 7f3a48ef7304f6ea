package main

// Helpers of the end-to-end tests (e2e_*_test.go): a config writer that takes the test's
// own dnstest server and rule file, an SMTP client bound to a chosen loopback source
// address, and readers of the postmaster's maildir.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

// e2eConfig writes portcullis.yaml and rules.yaml into dir: one MX listener on a free
// loopback port, DNS from dns (never the machine's resolver), and trusted_networks set
// to a documentation prefix so that loopback clients are not trusted and the rules that
// say !client.trusted apply to them. IMAP, POP3 and HTTP are off (their defaults are
// fixed ports, and their late "listening" lines would race with startServer's readers).
// extra is appended to portcullis.yaml.
func e2eConfig(t *testing.T, dir string, dns *dnstest.Server, rules, extra string) string {
	t.Helper()
	rulesPath := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rulesPath, []byte(rules), 0o644))
	cfg := fmt.Sprintf(`hostname: mx.example.test
data_dir: %s
local_domains: [example.test]
trusted_networks: [192.0.2.0/24]
postmaster: postmaster@example.test
rules: %s
http: { addr: "" }
imap: { addr: "" }
pop3: { addr: "" }
managesieve: { addr: "" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
%s`, filepath.Join(dir, "data"), rulesPath, dns.Addr(), extra)
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o644))
	return path
}

// dialFrom connects to addr from the local address src ("" for any; Linux routes all of
// 127.0.0.0/8 to lo, so a test can be several clients) and sets deadline on the
// connection. Every e2e client dials through it.
func dialFrom(addr, src string, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// e2eDial connects to addr from the loopback address src ("127.0.0.2": Linux routes all
// of 127.0.0.0/8 to lo, so a test can be several clients) and says EHLO helo.
func e2eDial(t *testing.T, addr, src, helo string) *smtp.Client {
	t.Helper()
	conn, err := dialFrom(addr, src, time.Now().Add(60*time.Second))
	require.NoError(t, err, "dial %s from %s", addr, src)
	c := smtp.NewClient(conn)
	require.NoError(t, c.Hello(helo))
	return c
}

// smtpCode returns the reply code of an SMTP error, 250 for nil, 0 for an error that is
// not an SMTP reply (a broken connection).
func smtpCode(err error) int {
	if err == nil {
		return 250
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// smtpMessage returns the text of an SMTP error reply ("" when err is not one).
func smtpMessage(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	return ""
}

// e2eSend runs one transaction on c: MAIL FROM, RCPT TO, DATA. It returns the stage
// ("mail", "rcpt", "data", "") whose reply was not 2xx and that reply's error.
func e2eSend(c *smtp.Client, from, rcpt, msg string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "mail", err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return "rcpt", err
	}
	w, err := c.Data()
	if err != nil {
		return "data", err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return "data", err
	}
	if err := w.Close(); err != nil {
		return "data", err
	}
	return "", nil
}

// postmasterMaildir is the postmaster's Maildir/new under the data dir of dir.
func postmasterMaildir(dir string) string {
	return filepath.Join(dir, "data/mail/example.test/postmaster/Maildir/new")
}

// maildirMessages returns the messages delivered to the postmaster, sorted by file name.
func maildirMessages(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(postmasterMaildir(dir), "*"))
	require.NoError(t, err)
	sort.Strings(files)
	out := make([]string, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		out = append(out, string(b))
	}
	return out
}

// waitDelivered waits until the postmaster's maildir holds n messages and returns them.
func waitDelivered(t *testing.T, dir string, n int) []string {
	t.Helper()
	requireEventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(postmasterMaildir(dir), "*"))
		return len(files) >= n
	})
	return maildirMessages(t, dir)
}

// headerBlock returns the header section of a message (up to the first empty line).
func headerBlock(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	if i := strings.Index(msg, "\n\n"); i >= 0 {
		return msg[:i+1]
	}
	return msg
}

// headerFields returns the unfolded values of every field called name in msg's header.
func headerFields(msg, name string) []string {
	var out []string
	lines := strings.Split(headerBlock(msg), "\n")
	for i := 0; i < len(lines); i++ {
		k, v, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) || strings.HasPrefix(lines[i], " ") || strings.HasPrefix(lines[i], "\t") {
			continue
		}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			v += " " + strings.TrimSpace(lines[i])
		}
		out = append(out, strings.TrimSpace(v))
	}
	return out
}
