package dnsx_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/dnsx"
)

// fixed is a Resolver that answers every question with the records of one message.
type fixed struct{ m *dns.Msg }

func (f fixed) Query(_ context.Context, name string, qtype uint16) (*dnsx.Answer, error) {
	return &dnsx.Answer{Name: dns.Fqdn(name), Type: qtype, Records: f.m.Answer, SOA: nil}, nil
}

// FuzzAnswer feeds arbitrary DNS responses (as a server could send them) to the code that
// walks CNAME chains and converts records: it must not panic or loop.
func FuzzAnswer(f *testing.F) {
	for _, rrs := range [][]string{
		{"a.test. 60 IN CNAME b.test.", "b.test. 60 IN CNAME a.test."},
		{"a.test. 60 IN TXT \"v=spf1\" \" -all\"", "a.test. 60 IN MX 10 mx.test.", "a.test. 60 IN A 192.0.2.1"},
		{"1.2.0.192.in-addr.arpa. 60 IN PTR a.test.", "a.test. 60 IN AAAA 2001:db8::1"},
	} {
		m := new(dns.Msg)
		m.SetQuestion("a.test.", dns.TypeA)
		for _, s := range rrs {
			rr, _ := dns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		r := fixed{m}
		ctx := context.Background()
		for _, qt := range []uint16{dns.TypeA, dns.TypeCNAME, dns.TypeANY, dns.TypeTXT} {
			a, _ := r.Query(ctx, "a.test", qt)
			a.Chain()
		}
		dnsx.LookupTXT(ctx, r, "a.test")
		dnsx.LookupIP(ctx, r, "a.test")
		dnsx.LookupMX(ctx, r, "a.test")
		dnsx.ForwardConfirmed(ctx, r, netip.MustParseAddr("192.0.2.1"))
	})
}
