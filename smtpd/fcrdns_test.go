package smtpd_test

import (
	"context"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// FCrDNS at connect: the name reaches the transaction (rules), the Received header and
// the log; a name that does not confirm is not used.
func TestFCrDNS(t *testing.T) {
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR client.example.net.", "PTR liar.example.net."},
		"client.example.net.":     {"A 127.0.0.1"},
		"liar.example.net.":       {"A 192.0.2.9"},
	})
	var seen []policy.Conn
	ts := startResolving(t, dns, &seen)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Transaction(t, "a@example.net", []string{"bob@example.test"}, smtptest.Message("a@example.net", "bob@example.test", "rdns", 100))
	c.Expect(t, "", 250)
	if len(seen) != 1 || seen[0].Hostname != "client.example.net" || len(seen[0].PTRNames) != 2 {
		t.Fatalf("connect stage saw %+v", seen)
	}
	got := ts.q.messages()
	if len(got) != 1 || !strings.Contains(string(got[0].Data), "from client.example.net (client.example.net [127.0.0.1])") {
		t.Fatalf("Received header: %q", got[0].Data[:120])
	}
}

// A reverse lookup that fails temporarily is visible to rules as client.dns_error.
func TestFCrDNSTempError(t *testing.T) {
	dns := dnstest.New(t, dnstest.Zone{})
	dns.Fail("1.0.0.127.in-addr.arpa.", dnstest.ServFail)
	var seen []policy.Conn
	ts := startResolving(t, dns, &seen)
	dial(t, ts.addr("mx")).Expect(t, "QUIT", 221)
	if len(seen) != 1 || !seen[0].DNSError || seen[0].Hostname != "" {
		t.Fatalf("connect stage saw %+v", seen)
	}
}

// startResolving starts a server that resolves with dns and records in seen what the
// connect stage saw of each client.
func startResolving(t *testing.T, dns *dnstest.Server, seen *[]policy.Conn) *testServer {
	return start(t, func(_ *smtpd.Config, d *smtpd.Deps) {
		d.Resolver = dns.Resolver()
		d.Engine = smtpd.EngineFunc(func(_ context.Context, s policy.Stage, tx *policy.Transaction) policy.Decision {
			if s == policy.StageConnect {
				*seen = append(*seen, tx.Conn)
			}
			return policy.Decision{}
		})
	})
}
