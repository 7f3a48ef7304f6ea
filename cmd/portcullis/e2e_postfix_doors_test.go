package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

const e2eDoorRules = `policies:
  spf:   { spf: {} }
  dmarc: { dmarc: {} }
rules:
  - name: blocked
    stage: rcpt
    if: rcpt.local == "blocked"
    reject: '550 5.7.1 "blocked by portcullis"'
  - name: dmarc-reject
    stage: data
    if: dmarc.fail && dmarc.policy == "reject" && !client.authenticated && !client.trusted
    reject: '550 5.7.1 "DMARC policy of {{dmarc.from_domain}} rejects this message"'
  - name: spam-score
    stage: data
    if: "true"
    add_header: "X-Spam-Score: {{score}}"
`

// TestE2EPostfixDoors: the binary serves both Postfix doors, and a real Postfix uses
// them: check_policy_service refuses a recipient with portcullis's reply at RCPT;
// smtpd_milters runs the data stage — DKIM and DMARC over the message exactly as sent,
// so a signed, aligned message is delivered with our Authentication-Results saying
// dkim=pass and dmarc=pass and its signature still verifying, and a forged one is
// refused at end of data with the DMARC rule's reply.

func TestE2EPostfixDoors(t *testing.T) {
	dir := t.TempDir()
	keys := t.TempDir()
	keyName, keyTXT, err := dkim.GenerateKey(keys, "signed.example", "s1", dkim.AlgoEd25519)
	require.NoError(t, err)
	signer, err := dkim.NewSigner(dkim.SignerConfig{Dir: keys})
	require.NoError(t, err)
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
		"_dmarc.bank.example.":    {`TXT "v=DMARC1; p=reject"`},
		"bank.example.":           {`TXT "v=spf1 -all"`},
		"signed.example.":         {`TXT "v=spf1 ip4:127.0.0.1 -all"`},
		"_dmarc.signed.example.":  {`TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`},
		keyName + ".":             {fmt.Sprintf("TXT %q", keyTXT)},
	})
	// The binary also chains its own milter behind its MX (smtp.milters), as a site
	// chains rspamd: a message sent to the MX gets the milter's X-Spam-Score too.
	milterAddr := testenv.FreeAddr(t)
	cfg := e2eConfig(t, dir, dns, e2eDoorRules, fmt.Sprintf(`  milters:
    - { addr: "inet:%[1]s", default_action: tempfail, connect_timeout: 5s, timeout: 30s }
policyd: { addr: "127.0.0.1:0" }
milter: { addr: "%[1]s" }
`, milterAddr))
	srv := startServer(t, cfg, "mx", "policyd", "milter")
	defer srv.kill()

	pf := postfixtest.Start(t, postfixtest.Config{
		Users: []string{"alice", "blocked"},
		MainCF: fmt.Sprintf(`smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:%s
smtpd_milters = inet:%s
milter_protocol = 6
milter_default_action = tempfail
`, srv.addrs["policyd"], srv.addrs["milter"]),
	})
	c, err := smtptest.Dial(pf.Addr)
	require.NoError(t, err)
	defer c.Close()
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.example.net", 250)

	// The policy service refuses a recipient.
	c.Expect(t, "MAIL FROM:<alice@signed.example>", 250)
	r := c.Expect(t, "RCPT TO:<blocked@remote.test>", 550)
	require.True(t, strings.HasSuffix(r.Text(), "blocked by portcullis"), r.String())
	c.Expect(t, "RSET", 250)

	// The milter refuses a forged From: at end of data.
	c.Transaction(t, "a@other.example", []string{"alice@remote.test"},
		e2eMessage("Bank <security@bank.example>", "dmarc-forged", "please log in"))
	r = c.Expect(t, "", 550)
	require.Equal(t, "5.7.1 DMARC policy of bank.example rejects this message", r.Text())

	// A signed, aligned message is delivered with our verdicts on top.
	signed, err := signer.SignMessage([]byte(e2eMessage("Alice <alice@signed.example>", "signed-aligned", "signed body")))
	require.NoError(t, err)
	c.Transaction(t, "alice@signed.example", []string{"alice@remote.test"}, string(signed))
	c.Expect(t, "", 250)
	c.Expect(t, "QUIT", 221)
	msgs := pf.WaitMessages(t, "alice", 1)
	got := strings.ReplaceAll(string(msgs[0]), "\n", "\r\n") // maildir files have LF ends
	var ours []string
	for _, v := range headerFields(got, "Authentication-Results") {
		if dkim.AuthServID(v) == "mx.example.test" {
			ours = append(ours, v)
		}
	}
	require.Len(t, ours, 1, headerBlock(got))
	for _, want := range []string{"dkim=pass", "header.d=signed.example", "dmarc=pass", "spf=pass"} {
		require.Contains(t, ours[0], want, "Authentication-Results: %s", ours[0])
	}
	require.Len(t, headerFields(got, "X-Spam-Score"), 1, headerBlock(got))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sigs, err := dkim.Verify(ctx, dns.Resolver(), strings.NewReader(got), nil)
	require.NoError(t, err)
	require.Len(t, sigs, 1)
	require.Equal(t, dkim.ResultPass, sigs[0].Result, sigs[0].Reason)
	require.Len(t, pf.Messages(t, "blocked"), 0)

	// Straight to portcullis's MX: its rules, then the chained milter.
	mx := e2eDial(t, srv.addrs["mx"], "127.0.0.1", "client.example.net")
	_, err = e2eSend(mx, "a@other.example", "postmaster@example.test", e2eMessage("a@other.example", "chained", "hello"))
	require.NoError(t, err)
	_ = mx.Quit()
	delivered := waitDelivered(t, dir, 1)
	require.Len(t, headerFields(delivered[0], "X-Spam-Score"), 2, "ours and the chained milter's:\n%s", headerBlock(delivered[0]))
}
