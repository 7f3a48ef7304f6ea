package spf

import (
	"context"
	"net/netip"
	"testing"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
)

// TestScopeOwnDomains: scope own_domains checks only our own domains used by strangers
// (neither authenticated nor trusted); everything else is none without a DNS query or a
// Received-SPF header.
func TestScopeOwnDomains(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"example.test.":  {`TXT "v=spf1 ip4:192.0.2.10 -all"`},
		"example.org.":   {`TXT "v=spf1 -all"`},
		"nospf.example.": {"A 192.0.2.1"},
	})
	p, err := New(Config{Scope: ScopeOwnDomains}, Deps{Resolver: srv.Resolver(), LocalDomains: []string{"Example.Test.", "nospf.example"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mail := func(ip, from, user string, trusted bool) policy.Result {
		tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr(ip), HELO: "client.example.net", AuthUser: user, Trusted: trusted})
		tx.Hostname = "mx.example.test"
		tx.Envelope.From = address.Parse(from)
		return p.CheckMail(ctx, tx)
	}
	for _, c := range []struct {
		ip, from, user string
		trusted        bool
		status         policy.Status
		reason         string
	}{
		{"192.0.2.10", "<postmaster@example.test>", "", false, policy.StatusPass, "spf.pass"},
		{"192.0.2.99", "<postmaster@EXAMPLE.test>", "", false, policy.StatusFail, "spf.fail"},
		{"192.0.2.99", "<x@nospf.example>", "", false, policy.StatusNone, "spf.none"},
		// Not in scope: another domain, the null sender, authenticated, trusted.
		{"192.0.2.99", "<bob@example.org>", "", false, policy.StatusNone, "spf.skipped"},
		{"192.0.2.99", "<>", "", false, policy.StatusNone, "spf.skipped"},
		{"192.0.2.99", "<postmaster@example.test>", "alice@example.test", false, policy.StatusNone, "spf.skipped"},
		{"192.0.2.99", "<postmaster@example.test>", "", true, policy.StatusNone, "spf.skipped"},
	} {
		before := srv.Queries()
		r := mail(c.ip, c.from, c.user, c.trusted)
		if r.Status != c.status || r.Reason != c.reason {
			t.Errorf("%s from %s (user %q, trusted %v): %s %s, want %s %s", c.from, c.ip, c.user, c.trusted, r.Status, r.Reason, c.status, c.reason)
		}
		if c.reason == "spf.skipped" && (srv.Queries() != before || len(r.Headers) != 0) {
			t.Errorf("%s skipped with %d queries and headers %v", c.from, srv.Queries()-before, r.Headers)
		}
	}
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("192.0.2.10"), HELO: "example.test"})
	if r := p.CheckHelo(ctx, tx); r.Reason != "spf.skipped" {
		t.Errorf("helo: %+v", r)
	}
	if _, err := New(Config{Scope: "ours"}, Deps{Resolver: srv.Resolver()}); err == nil {
		t.Error("unknown scope accepted")
	}
}
