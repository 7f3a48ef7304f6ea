package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
)

// TestSubmissionAliasAndRelay goes through the whole binary: a user submits over
// STARTTLS to an alias of the local domain and to a remote address; the alias is expanded
// into the postmaster's maildir, and the remote copy goes through the relay host (a real
// Postfix on loopback), DKIM-signed with the key made by `portcullis dkim keygen`.
func TestSubmissionAliasAndRelay(t *testing.T) {
	remote := postfixtest.Start(t, postfixtest.Config{Users: []string{"bob"}, TLS: true})
	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases")
	require.NoError(t, os.WriteFile(aliases, []byte("# role addresses\ninfo: postmaster\n"), 0o644))
	cfg := writeConfig(t, dir, "    - { name: submission, addr: \"127.0.0.1:0\", mode: submission }\n")
	require.NoError(t, appendFile(cfg, "postmaster: postmaster@example.test\n"+
		"routing: { aliases: "+aliases+", relay_host: \"["+strings.Split(remote.Addr, ":")[0]+"]:"+strings.Split(remote.Addr, ":")[1]+"\" }\n"))

	out, err := run(t, "dkim", "keygen", "example.test", "--selector", "s1", "--config", cfg)
	require.NoError(t, err, out)
	require.Contains(t, out, "s1._domainkey.example.test")

	srv := startServer(t, cfg, "mx", "submission")
	defer srv.kill()
	requireEventually(t, func() bool { return passwordRe.MatchString(srv.logText()) })
	m := passwordRe.FindStringSubmatch(srv.logText())

	c, err := smtp.DialStartTLS(srv.addrs["submission"], &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, err)
	require.NoError(t, c.Auth(sasl.NewPlainClient("", m[1], m[2])))
	msg := "From: Postmaster <postmaster@example.test>\r\nTo: info@example.test, bob@remote.test\r\nSubject: relayed\r\nDate: " +
		time.Now().Format(time.RFC1123Z) + "\r\nMessage-ID: <r1@example.test>\r\n\r\nhello both\r\n"
	require.NoError(t, c.SendMail("postmaster@example.test", []string{"info@example.test", "bob@remote.test"}, strings.NewReader(msg)))
	c.Close()

	got := remote.WaitMessages(t, "bob", 1)
	require.Contains(t, string(got[0]), "DKIM-Signature:")
	require.Contains(t, string(got[0]), "d=example.test")
	require.Contains(t, string(got[0]), "s=s1")
	requireEventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "data/mail/example.test/postmaster/Maildir/new/*"))
		return len(files) == 1
	})

	// An unknown local user is refused at RCPT, not bounced later.
	c, err = smtp.Dial(srv.addrs["mx"])
	require.NoError(t, err)
	require.NoError(t, c.Hello("client.example.net"))
	require.NoError(t, c.Mail("a@example.net", nil))
	err = c.Rcpt("nobody@example.test", nil)
	var se *smtp.SMTPError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 550, se.Code)
	c.Close()
}
