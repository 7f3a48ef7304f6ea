package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

// e2eDNSRules uses every DNS policy the way an admin would: a DNSBL and an RHSBL reject
// at RCPT, SPF fail at MAIL (answered at RCPT: delay_reject), DMARC p=reject at DATA.
const e2eDNSRules = `policies:
  zen:   { rbl: ["zen.example=127.0.0.[2..11]*3"], txt: true }
  dbl:   { rhsbl: "dbl.example=127.0.1.[2..99]", on: [helo, sender] }
  uri:   { rhsbl: "uribl.example", on: [body_urls] }
  spf:   { spf: {} }
  dmarc: { dmarc: {} }
rules:
  - name: zen
    stage: rcpt
    if: zen.fail && !client.authenticated && !client.trusted
    reject: '554 5.7.1 "client {{client.ip}} is blocklisted ({{zen.txt}})"'
  - name: dbl
    stage: rcpt
    if: dbl.listed && !client.authenticated && !client.trusted
    reject: '554 5.7.1 "domain listed by dbl.example"'
  - name: spf-fail
    stage: mail
    if: spf.status == "fail" && !client.authenticated && !client.trusted
    reject: '550 5.7.23 "SPF fail for {{sender.domain}}"'
  - name: dmarc-reject
    stage: data
    if: dmarc.fail && dmarc.policy == "reject" && !client.authenticated && !client.trusted
    reject: '550 5.7.1 "DMARC policy of {{dmarc.from_domain}} rejects this message"'
  - name: uribl
    stage: data
    if: any(uri.hits, .source == "body_urls") && !client.trusted
    reject: '554 5.7.1 "message links to a listed domain ({{join(uri.domains, ", ")}})"'
`

func e2eMessage(from, subject, body string) string {
	return fmt.Sprintf("From: %s\r\nTo: postmaster@example.test\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@e2e.example>\r\n\r\n%s\r\n",
		from, subject, time.Now().Format(time.RFC1123Z), subject, body)
}

// TestE2EDNSPolicies drives the real binary through the DNS policies with every answer
// served by dnstest on loopback:
//   - a client whose address is on the DNSBL gets 554 at RCPT, naming the list's TXT;
//   - a MAIL FROM domain on the RHSBL gets 554 at RCPT;
//   - a message linking to a domain on a URI blocklist (a host below the listed
//     registrable domain) gets 554 at DATA;
//   - a MAIL FROM domain whose SPF record is "-all" gets 550 (SPF fail) at RCPT;
//   - a From: domain with DMARC p=reject and no aligned pass gets 550 at DATA;
//   - mail DKIM-signed by its From: domain (SPF pass too) is accepted and delivered with
//     our Authentication-Results (spf, dkim and dmarc pass), the signature still verifies,
//     and an Authentication-Results field forged with our authserv-id is removed while a
//     foreign one is kept.
func TestE2EDNSPolicies(t *testing.T) {
	dir := t.TempDir()
	keys := t.TempDir()
	keyName, keyTXT, err := dkim.GenerateKey(keys, "signed.example", "s1", dkim.AlgoEd25519)
	require.NoError(t, err)
	signer, err := dkim.NewSigner(dkim.SignerConfig{Dir: keys})
	require.NoError(t, err)

	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
		// The DNSBL lists 127.0.0.2, our second loopback client; 127.0.0.1 is not listed.
		"2.0.0.127.zen.example.":         {"A 127.0.0.2", `TXT "127.0.0.2 is a test listing"`},
		"spammer.example.dbl.example.":   {"A 127.0.1.2"},
		"spammer.example.":               {`TXT "v=spf1 ip4:127.0.0.1 -all"`},
		"badsite.example.uribl.example.": {"A 127.0.0.2"},
		"forged.example.":                {`TXT "v=spf1 -all"`},
		"good.example.":                  {`TXT "v=spf1 ip4:127.0.0.1 -all"`},
		"_dmarc.bank.example.":           {`TXT "v=DMARC1; p=reject"`},
		"bank.example.":                  {`TXT "v=spf1 -all"`},
		"signed.example.":                {`TXT "v=spf1 ip4:127.0.0.1 -all"`},
		"_dmarc.signed.example.":         {`TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`},
		keyName + ".":                    {fmt.Sprintf("TXT %q", keyTXT)},
	})
	cfg := e2eConfig(t, dir, dns, e2eDNSRules, "")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]

	type tcase struct {
		name, src, from, msg string
		stage                string // where the reply is not 2xx ("" = accepted)
		code                 int
		text                 string // in the reply
	}
	cases := []tcase{
		// A sender domain without SPF, so that only the DNSBL speaks.
		{"dnsbl", "127.0.0.2", "a@nospf.example", e2eMessage("a@nospf.example", "from-listed-ip", "hello"),
			"rcpt", 554, "127.0.0.2 is a test listing"},
		{"rhsbl", "127.0.0.1", "bulk@spammer.example", e2eMessage("bulk@spammer.example", "from-listed-domain", "hello"),
			"rcpt", 554, "dbl.example"},
		{"uribl", "127.0.0.1", "a@good.example", e2eMessage("a@good.example", "links-to-listed", "cheap pills at http://www.shop.badsite.example/buy?now"),
			"data", 554, "badsite.example"},
		{"spf-fail", "127.0.0.1", "ceo@forged.example", e2eMessage("ceo@forged.example", "spf-forged", "hello"),
			"rcpt", 550, "SPF fail for forged.example"},
		{"dmarc-reject", "127.0.0.1", "a@good.example", e2eMessage("Bank <security@bank.example>", "dmarc-forged", "please log in"),
			"data", 550, "DMARC policy of bank.example"},
		{"unsigned-no-dmarc", "127.0.0.1", "a@good.example", e2eMessage("a@good.example", "plain-good", "hello"),
			"", 250, ""},
	}
	for _, tc := range cases {
		c := e2eDial(t, addr, tc.src, "client.example.net")
		stage, err := e2eSend(c, tc.from, "postmaster@example.test", tc.msg)
		_ = c.Close()
		require.Equal(t, tc.stage, stage, "%s: rejected at the wrong stage: %v", tc.name, err)
		require.Equal(t, tc.code, smtpCode(err), "%s: %v", tc.name, err)
		require.Contains(t, smtpMessage(err), tc.text, tc.name)
	}

	// Signed and aligned, with a forged Authentication-Results claiming our name (added
	// after signing, as a forger would) and a foreign one.
	signed, err := signer.SignMessage([]byte(e2eMessage("Alice <alice@signed.example>", "signed-aligned", "signed body")))
	require.NoError(t, err)
	msg := "Authentication-Results: mx.example.test; dkim=pass header.d=forged-marker.example; dmarc=pass\r\n" +
		"Authentication-Results: relay.other.example; spf=pass smtp.mailfrom=kept-marker.example\r\n" + string(signed)
	c := e2eDial(t, addr, "127.0.0.1", "client.example.net")
	stage, err := e2eSend(c, "alice@signed.example", "postmaster@example.test", msg)
	require.NoError(t, err, "signed+aligned mail rejected at %s", stage)
	_ = c.Quit()

	waitDelivered(t, dir, 2)
	// Nothing rejected was delivered: exactly the two accepted messages.
	time.Sleep(300 * time.Millisecond)
	got := maildirMessages(t, dir)
	require.Len(t, got, 2, "only the accepted messages are delivered")
	var signedMsg, plainMsg string
	for _, m := range got {
		switch {
		case strings.Contains(m, "Subject: signed-aligned"):
			signedMsg = m
		case strings.Contains(m, "Subject: plain-good"):
			plainMsg = m
		}
	}
	require.NotEmpty(t, signedMsg, "signed message not delivered")
	require.NotEmpty(t, plainMsg, "unsigned good message not delivered")

	ours := func(m string) []string {
		var out []string
		for _, v := range headerFields(m, "Authentication-Results") {
			if dkim.AuthServID(v) == "mx.example.test" {
				out = append(out, v)
			}
		}
		return out
	}
	ar := ours(signedMsg)
	require.Len(t, ar, 1, "exactly one Authentication-Results of ours (the forged one removed):\n%s", headerBlock(signedMsg))
	require.NotContains(t, signedMsg, "forged-marker.example", "forged Authentication-Results kept")
	require.Contains(t, signedMsg, "kept-marker.example", "a foreign Authentication-Results must be kept")
	for _, want := range []string{"dkim=pass", "header.d=signed.example", "dmarc=pass", "spf=pass"} {
		require.Contains(t, ar[0], want, "Authentication-Results: %s", ar[0])
	}
	spfHdr := headerFields(signedMsg, "Received-SPF")
	require.Len(t, spfHdr, 1, headerBlock(signedMsg))
	require.True(t, strings.HasPrefix(spfHdr[0], "pass "), spfHdr[0])
	// The signature still verifies on the delivered bytes: nothing we did broke it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sigs, err := dkim.Verify(ctx, dns.Resolver(), strings.NewReader(signedMsg), nil)
	require.NoError(t, err)
	require.Len(t, sigs, 1)
	require.Equal(t, dkim.ResultPass, sigs[0].Result, sigs[0].Reason)

	// The unsigned message from an SPF-authorised client: spf pass, no DKIM, dmarc none.
	ar = ours(plainMsg)
	require.Len(t, ar, 1, headerBlock(plainMsg))
	require.Contains(t, ar[0], "spf=pass")
	require.Contains(t, ar[0], "dmarc=none")
	require.NotContains(t, ar[0], "dkim=pass")
}

// TestE2EDNSFaults: DNS trouble never rejects by itself and never hangs a session. The
// DNSBL does not answer at all for the client, a second list answers with a "query
// refused" code (Spamhaus 127.255.255.254, which is an error, not a listing), and the
// sender's SPF and DMARC records SERVFAIL: the message is accepted within the policies'
// deadlines and its Authentication-Results say temperror.
func TestE2EDNSFaults(t *testing.T) {
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.":     {"PTR localhost.example.test."},
		"localhost.example.test.":     {"A 127.0.0.1"},
		"1.0.0.127.zen.example.":      {"A 127.0.0.2"},
		"1.0.0.127.refusing.example.": {"A 127.255.255.254"},
		"flaky.example.":              {`TXT "v=spf1 -all"`},
		"_dmarc.flaky.example.":       {`TXT "v=DMARC1; p=reject"`},
	})
	dns.Fail("1.0.0.127.zen.example.", dnstest.Timeout)
	dns.Fail("flaky.example.", dnstest.ServFail)
	dns.Fail("_dmarc.flaky.example.", dnstest.ServFail)
	rules := strings.Replace(e2eDNSRules, "  spf:   { spf: {} }\n",
		"  spf:   { spf: {} }\n  refusing: { rbl: [refusing.example] }\n", 1) + `  - name: refusing
    stage: rcpt
    if: refusing.fail
    reject: '554 5.7.1 "listed by refusing.example"'
  - name: record-dns-errors
    stage: data
    if: zen.temperror && refusing.permerror
    add_header: "X-E2E-DNS: zen temperror, refusing permerror"
`
	cfg := e2eConfig(t, dir, dns, rules, "")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()

	start := time.Now()
	c := e2eDial(t, srv.addrs["mx"], "127.0.0.1", "client.example.net")
	stage, err := e2eSend(c, "a@flaky.example", "postmaster@example.test",
		e2eMessage("a@flaky.example", "dns-trouble", "hello"))
	require.NoError(t, err, "DNS trouble rejected the message at %s", stage)
	_ = c.Quit()
	took := time.Since(start)
	// The DNSBL's deadline (rbl timeout, 10 s by default) bounds the wait; the dnsx
	// client's own timeout (2 s per try) normally ends it sooner.
	require.Less(t, took, 15*time.Second, "a DNS timeout held the session")

	got := waitDelivered(t, dir, 1)
	require.Len(t, got, 1)
	var ar []string
	for _, v := range headerFields(got[0], "Authentication-Results") {
		if dkim.AuthServID(v) == "mx.example.test" {
			ar = append(ar, v)
		}
	}
	require.Len(t, ar, 1, headerBlock(got[0]))
	require.Contains(t, ar[0], "spf=temperror")
	require.Contains(t, ar[0], "dmarc=temperror")
	require.Equal(t, []string{"zen temperror, refusing permerror"}, headerFields(got[0], "X-E2E-DNS"), headerBlock(got[0]))
	t.Logf("accepted in %v despite a DNSBL timeout, a refused DNSBL query and SPF/DMARC SERVFAIL", took.Round(time.Millisecond))
}
