package main

// One header line without a colon at the top of a message must not hide the header from
// the checks (policy.ParseHeader reads on, as mail readers do): the executable attachment,
// the DMARC spoof and the forged Authentication-Results behind it are all caught.

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

func TestE2EMalformedHeaderBypass(t *testing.T) {
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{
		"good.example.":        {`TXT "v=spf1 ip4:127.0.0.1 -all"`},
		"_dmarc.bank.example.": {`TXT "v=DMARC1; p=reject"`},
	})
	rules := strings.Replace(e2eDNSRules, "rules:\n", "rules:\n"+strings.SplitN(string(config.DefaultRules()), "\nrules:\n", 2)[1], 1)
	cfg := e2eConfig(t, dir, dns, rules, "")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	junk := "Junk line without a colon\r\n"
	exe := "From: a@good.example\r\nTo: postmaster@example.test\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=\"invoice.pdf.exe\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA==\r\n--b--\r\n"
	for name, msg := range map[string]string{
		"executable attachment": junk + exe,
		"DMARC p=reject spoof":  junk + e2eMessage("Bank <security@bank.example>", "spoof", "please log in"),
		"forged Auth-Results":   "Authentication-Results: mx.example.test; dkim=pass header.d=forged.example\r\n" + junk + e2eMessage("a@good.example", "forged-ar", "x"),
	} {
		c := e2eDial(t, srv.addrs["mx"], "127.0.0.1", "client.example.net")
		_, err := e2eSend(c, "a@good.example", "postmaster@example.test", msg)
		c.Close()
		code := smtpCode(err)
		if code == 250 && name == "forged Auth-Results" {
			got := waitDelivered(t, dir, 1)
			require.NotContains(t, got[len(got)-1], "forged.example", "forged Authentication-Results delivered")
			continue
		}
		require.True(t, code >= 500, "%s behind a malformed header line: %d %v", name, code, err)
	}
}
