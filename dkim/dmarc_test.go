package dkim

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

func TestAligned(t *testing.T) {
	for _, tc := range []struct {
		a, b            string
		relaxed, strict bool
	}{
		{"example.com", "example.com", true, true},
		{"EXAMPLE.com.", "example.COM", true, true},
		{"mail.example.com", "example.com", true, false},
		{"example.com", "news.example.com", true, false},
		{"a.example.com", "b.example.com", true, false},
		{"example.com", "example.net", false, false},
		{"example.co.uk", "mail.example.co.uk", true, false},
		{"example.co.uk", "other.co.uk", false, false},   // co.uk is a public suffix
		{"foo.github.io", "bar.github.io", false, false}, // so is github.io (private section)
		{"foo.github.io", "x.foo.github.io", true, false},
		{"", "example.com", false, false},
		{"bücher.example", "xn--bcher-kva.example", true, true}, // IDN: U-label vs A-label
		{"mail.BÜCHER.example", "xn--bcher-kva.example", true, false},
		{"com", "example.com", false, false},
	} {
		if got := Aligned(tc.a, tc.b, false); got != tc.relaxed {
			t.Errorf("relaxed %s ~ %s = %v, want %v", tc.a, tc.b, got, tc.relaxed)
		}
		if got := Aligned(tc.a, tc.b, true); got != tc.strict {
			t.Errorf("strict %s ~ %s = %v, want %v", tc.a, tc.b, got, tc.strict)
		}
	}
}

func rec(t *testing.T, domain, txt string) *Record {
	t.Helper()
	r, err := dmarc.Parse(txt)
	if err != nil {
		t.Fatal(err)
	}
	return &Record{Record: r, Domain: domain}
}

func TestEvaluate(t *testing.T) {
	for i, tc := range []struct {
		recDomain, txt string
		in             Input
		result, policy string
		spf, dkim      bool
	}{
		// relaxed by default: a subdomain's SPF or DKIM aligns
		{"example.com", "v=DMARC1; p=reject", Input{FromDomain: "example.com", SPFDomain: "bounce.example.com", SPFResult: "pass"}, "pass", "reject", true, false},
		{"example.com", "v=DMARC1; p=reject", Input{FromDomain: "example.com", DKIMPassDomains: []string{"mail.example.com"}}, "pass", "reject", false, true},
		// strict SPF, relaxed DKIM
		{"example.com", "v=DMARC1; p=reject; aspf=s", Input{FromDomain: "example.com", SPFDomain: "bounce.example.com", SPFResult: "pass"}, "fail", "reject", false, false},
		{"example.com", "v=DMARC1; p=reject; aspf=s", Input{FromDomain: "example.com", SPFDomain: "example.com", SPFResult: "pass"}, "pass", "reject", true, false},
		// strict DKIM
		{"example.com", "v=DMARC1; p=quarantine; adkim=s", Input{FromDomain: "example.com", DKIMPassDomains: []string{"mail.example.com"}}, "fail", "quarantine", false, false},
		{"example.com", "v=DMARC1; p=quarantine; adkim=s", Input{FromDomain: "example.com", DKIMPassDomains: []string{"other.test", "example.com"}}, "pass", "quarantine", false, true},
		// SPF must pass to align; a fail with the right domain does not
		{"example.com", "v=DMARC1; p=reject", Input{FromDomain: "example.com", SPFDomain: "example.com", SPFResult: "softfail"}, "fail", "reject", false, false},
		// unrelated domains
		{"example.com", "v=DMARC1; p=reject", Input{FromDomain: "example.com", SPFDomain: "evil.test", SPFResult: "pass", DKIMPassDomains: []string{"evil.test"}}, "fail", "reject", false, false},
		// sp applies to a subdomain From: whose record is the organizational domain's
		{"example.com", "v=DMARC1; p=reject; sp=none", Input{FromDomain: "news.example.com"}, "fail", "none", false, false},
		{"example.com", "v=DMARC1; p=reject; sp=quarantine", Input{FromDomain: "example.com"}, "fail", "reject", false, false},
		// a subdomain with its own record uses its p
		{"news.example.com", "v=DMARC1; p=quarantine; sp=none", Input{FromDomain: "news.example.com"}, "fail", "quarantine", false, false},
		// pct=0: never sampled, the policy steps down one level (RFC 7489 §6.6.4)
		{"example.com", "v=DMARC1; p=reject; pct=0", Input{FromDomain: "example.com", SampleKey: "<a@b>"}, "fail", "quarantine", false, false},
		{"example.com", "v=DMARC1; p=quarantine; pct=0", Input{FromDomain: "example.com", SampleKey: "<a@b>"}, "fail", "none", false, false},
		{"example.com", "v=DMARC1; p=reject; pct=100", Input{FromDomain: "example.com", SampleKey: "<a@b>"}, "fail", "reject", false, false},
	} {
		ev := Evaluate(rec(t, tc.recDomain, tc.txt), tc.in)
		if ev.Result != tc.result || ev.Policy != tc.policy || ev.AlignedSPF != tc.spf || ev.AlignedDKIM != tc.dkim {
			t.Errorf("%d %q %+v: got %+v", i, tc.txt, tc.in, ev)
		}
	}
	if ev := Evaluate(nil, Input{FromDomain: "example.com", SPFDomain: "example.com", SPFResult: "pass"}); ev.Result != DMARCNone || ev.Policy != "" || !ev.AlignedSPF {
		t.Errorf("no record: %+v", ev)
	}
}

func TestPercentSampling(t *testing.T) {
	r := rec(t, "example.com", "v=DMARC1; p=reject; pct=30")
	sampled := 0
	for i := range 1000 {
		key := fmt.Sprintf("<%d@example.com>", i)
		a := Evaluate(r, Input{FromDomain: "example.com", SampleKey: key})
		b := Evaluate(r, Input{FromDomain: "example.com", SampleKey: key})
		if a.Policy != b.Policy {
			t.Fatal("sampling is not deterministic")
		}
		if a.Sampled {
			sampled++
			if a.Policy != "reject" {
				t.Fatalf("sampled message gets %s", a.Policy)
			}
		} else if a.Policy != "quarantine" {
			t.Fatalf("unsampled message gets %s", a.Policy)
		}
	}
	if sampled < 240 || sampled > 360 {
		t.Fatalf("pct=30 sampled %d of 1000", sampled)
	}
}

func TestLookupDMARC(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"_dmarc.example.com.":           {`TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"`},
		"_dmarc.own.example.com.":       {`TXT "v=DMARC1; p=none"`},
		"_dmarc.two.test.":              {`TXT "v=DMARC1; p=none"`, `TXT "v=DMARC1; p=reject"`},
		"_dmarc.other.two.test.":        {`TXT "some other text"`},
		"_dmarc.broken.test.":           {`TXT "v=DMARC1; p=maybe"`},
		"_dmarc.slow.test.":             {`TXT "v=DMARC1; p=reject"`},
		"_dmarc.example.co.uk.":         {`TXT "v=DMARC1; p=quarantine"`},
		"_dmarc.xn--bcher-kva.example.": {`TXT "v=DMARC1; p=none"`},
		"_dmarc.split.test.":            {`TXT "v=DMARC1; " "p=reject"`},
	})
	srv.Fail("_dmarc.slow.test", dnstest.Timeout)
	ctx := context.Background()
	for _, tc := range []struct {
		from, domain, policy string
		err                  error
	}{
		{"example.com", "example.com", "reject", nil},
		{"a.b.example.com", "example.com", "reject", nil}, // organizational domain
		{"own.example.com", "own.example.com", "none", nil},
		{"shop.example.co.uk", "example.co.uk", "quarantine", nil},
		{"two.test", "", "", ErrNoRecord}, // two records: no DMARC (§6.6.3)
		{"nothing.test", "", "", ErrNoRecord},
		{"slow.test", "", "", dnsx.ErrTemporary},
		{"split.test", "split.test", "reject", nil},
		{"news.bücher.example", "xn--bcher-kva.example", "none", nil},
		{"bad name.test", "", "", ErrNoRecord},
	} {
		r, err := LookupDMARC(ctx, srv.Resolver(), tc.from)
		if tc.err != nil {
			if !errorsIs(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.from, err, tc.err)
			}
			continue
		}
		if err != nil || r.Domain != tc.domain || string(r.Policy) != tc.policy {
			t.Errorf("%s: %+v %v", tc.from, r, err)
		}
	}
	if _, err := LookupDMARC(ctx, srv.Resolver(), "broken.test"); err == nil || errorsIs(err, ErrNoRecord) {
		t.Errorf("broken record: %v", err)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
