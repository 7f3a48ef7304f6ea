package main

// Senders are checked by the shipped rules (issue 15, item 7), against the real binary:
// an authenticated user sends only as their own addresses and aliases (the null sender
// only as an admin), and a stranger on the MX uses one of our domains only where its SPF
// record allows the client.

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

// addUser creates a local user in the data dir of dir with the CLI, in-process.
func addUser(t *testing.T, dir, user, pass string) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(pass + "\n"))
	root.SetArgs([]string{"user", "add", user, "--password-stdin", "--data", filepath.Join(dir, "data")})
	require.NoError(t, root.Execute(), out.String())
}

// submit connects to a submission listener with STARTTLS and logs in.
func submit(t *testing.T, addr, user, pass string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, err)
	require.NoError(t, c.Hello("laptop.example.net"))
	require.NoError(t, c.Auth(sasl.NewPlainClient("", user, pass)), "AUTH as %s", user)
	return c
}

func TestE2ESenderOwnership(t *testing.T) {
	dir := t.TempDir()
	dnsSrv := dnstest.New(t, dnstest.Zone{
		// Our domain's SPF record allows 127.0.0.3 only.
		"example.test.": {`TXT "v=spf1 ip4:127.0.0.3 -all"`},
	})
	aliases := filepath.Join(dir, "aliases")
	require.NoError(t, os.WriteFile(aliases, []byte("sales: bob\n"), 0o644))
	extra := "    - { name: submission, addr: \"127.0.0.1:0\", mode: submission }\nrouting: { aliases: " + aliases + " }\n"
	cfg := e2eConfig(t, dir, dnsSrv, string(config.DefaultRules()), extra)
	addUser(t, dir, "bob@example.test", "bobs-secret-pass")
	srv := startServer(t, cfg, "mx", "submission")
	defer srv.kill()
	requireEventually(t, func() bool { return passwordRe.MatchString(srv.logText()) })
	pm := passwordRe.FindStringSubmatch(srv.logText())
	require.Equal(t, "postmaster@example.test", pm[1])

	type tcase struct {
		from  string
		stage string // where the reply is not 2xx ("" = accepted)
		code  int
		text  string
	}
	var accepted []string // the subjects of the accepted messages
	send := func(c *smtp.Client, who string, tc tcase) {
		t.Helper()
		subject := who + " as <" + tc.from + ">"
		hdrFrom := tc.from
		if hdrFrom == "" {
			hdrFrom = "MAILER-DAEMON@example.test"
		}
		stage, err := e2eSend(c, tc.from, "postmaster@example.test", e2eMessage(hdrFrom, subject, "hello"))
		if err == nil {
			accepted = append(accepted, subject)
		}
		require.Equal(t, tc.stage, stage, "%s as <%s>: %v", who, tc.from, err)
		require.Equal(t, tc.code, smtpCode(err), "%s as <%s>: %v", who, tc.from, err)
		require.Contains(t, smtpMessage(err), tc.text, "%s as <%s>", who, tc.from)
		if err != nil {
			require.NoError(t, c.Reset())
		}
	}

	// bob, authenticated on submission.
	c := submit(t, srv.addrs["submission"], "bob@example.test", "bobs-secret-pass")
	for _, tc := range []tcase{
		{"postmaster@example.test", "rcpt", 553, "553 5.7.1 <postmaster@example.test>: Sender address rejected: not owned by user bob@example.test"},
		{"alice@elsewhere.example", "rcpt", 553, "not owned by user bob@example.test"},
		{"bob@example.test", "", 250, ""},
		{"Bob+lists@Example.Test", "", 250, ""},
		{"sales@example.test", "", 250, ""}, // an alias that delivers to bob
		{"", "rcpt", 553, "<>: Sender address rejected: not owned by user bob@example.test"},
	} {
		send(c, "bob", tc)
	}
	require.NoError(t, c.Quit())

	// The postmaster is an admin by default: the null sender is theirs.
	c = submit(t, srv.addrs["submission"], pm[1], pm[2])
	send(c, "postmaster", tcase{"", "", 250, ""})
	send(c, "postmaster", tcase{"bob@example.test", "rcpt", 553, "not owned by user postmaster@example.test"})
	require.NoError(t, c.Quit())

	// Strangers on the MX (loopback is not trusted in e2eConfig).
	mx := srv.addrs["mx"]
	c = e2eDial(t, mx, "127.0.0.1", "client.example.net")
	send(c, "stranger 127.0.0.1", tcase{"postmaster@example.test", "rcpt", 553, "Sender address rejected: not logged in (SPF fail for example.test)"})
	send(c, "stranger 127.0.0.1", tcase{"a@elsewhere.example", "", 250, ""})
	require.NoError(t, c.Quit())
	require.Zero(t, dnsSrv.QueriesFor("elsewhere.example.", dns.TypeTXT), "SPF is asked only for our own domains")
	c = e2eDial(t, mx, "127.0.0.3", "client.example.net")
	send(c, "stranger 127.0.0.3", tcase{"postmaster@example.test", "", 250, ""}) // SPF pass
	require.NoError(t, c.Quit())

	// Exactly the accepted messages are delivered: bob's three, the postmaster's bounce,
	// the foreign sender and the SPF-passing stranger.
	require.Len(t, accepted, 6)
	waitDelivered(t, dir, len(accepted))
	time.Sleep(300 * time.Millisecond)
	var delivered []string
	for _, m := range maildirMessages(t, dir) {
		delivered = append(delivered, headerFields(m, "Subject")...)
	}
	require.ElementsMatch(t, accepted, delivered)
}

// TestE2ESenderOursSPFTrouble: a stranger using our domain when its SPF cannot be asked
// gets a tempfail (fail closed: the client retries), and with no SPF record at all a
// rejection.
func TestE2ESenderOursSPFTrouble(t *testing.T) {
	dir := t.TempDir()
	dnsSrv := dnstest.New(t, dnstest.Zone{"mx.example.test.": {"A 127.0.0.1"}})
	dnsSrv.Fail("example.test.", dnstest.ServFail)
	cfg := e2eConfig(t, dir, dnsSrv, string(config.DefaultRules()), "")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()

	c := e2eDial(t, srv.addrs["mx"], "127.0.0.1", "client.example.net")
	stage, err := e2eSend(c, "postmaster@example.test", "postmaster@example.test", e2eMessage("postmaster@example.test", "dns-down", "x"))
	require.Equal(t, "rcpt", stage, "%v", err)
	require.Equal(t, 451, smtpCode(err), "%v", err)
	require.Contains(t, smtpMessage(err), "451 4.7.1 <postmaster@example.test>: Sender address rejected: cannot check the SPF record of example.test")
	require.NoError(t, c.Reset())

	dnsSrv.Fail("example.test.", dnstest.NoFault) // answers again: no SPF record
	stage, err = e2eSend(c, "postmaster@example.test", "postmaster@example.test", e2eMessage("postmaster@example.test", "no-spf", "x"))
	require.Equal(t, "rcpt", stage, "%v", err)
	require.Equal(t, 553, smtpCode(err), "%v", err)
	require.Contains(t, smtpMessage(err), "not logged in (SPF none for example.test)")
	require.NoError(t, c.Quit())
}
