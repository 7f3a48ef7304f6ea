package spf

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// The RFC 7208 test suite (openspf.org / pyspf, release 2014.04), shared by the project.
const suitePath = "../../shared/testdata/spf/rfc7208-tests.yml"

type suiteDoc struct {
	Description string               `yaml:"description"`
	Tests       map[string]suiteTest `yaml:"tests"`
	Zonedata    map[string][]any     `yaml:"zonedata"`
}

type suiteTest struct {
	Helo        string `yaml:"helo"`
	Host        string `yaml:"host"`
	Mailfrom    string `yaml:"mailfrom"`
	Result      any    `yaml:"result"`
	Explanation string `yaml:"explanation"`
	Spec        any    `yaml:"spec"`
}

func loadSuite(t testing.TB) []suiteDoc {
	t.Helper()
	raw, err := os.ReadFile(suitePath)
	if err != nil {
		testenv.Unavailable(t, "RFC 7208 suite: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []suiteDoc
	for {
		var d suiteDoc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("parse %s: %v", suitePath, err)
		}
		docs = append(docs, d)
	}
	return docs
}

// zoneRRs turns one document's zonedata into DNS records and the names that time out.
//
// Type SPF (99) records are copied to TXT for names without TXT records ("TXT: NONE"
// counts), as the suite's drivers do; we never query type SPF (RFC 7208 §3.1). The suite's
// TIMEOUT means "queries for which the name has no records time out"; dnstest injects
// faults per name, so a name gets the Timeout fault only when it has no records of a type
// this package queries (TXT, A, AAAA, MX, PTR, CNAME) — that is the suite's meaning for
// every query we make.
func zoneRRs(t testing.TB, zd map[string][]any) (rrs []dns.RR, timeouts []string) {
	t.Helper()
	for name, recs := range zd {
		fq := dns.Fqdn(escapeName(name))
		hdr := func(tp uint16) dns.RR_Header {
			return dns.RR_Header{Name: fq, Rrtype: tp, Class: dns.ClassINET, Ttl: 300}
		}
		var spf, txt []dns.RR
		hasTXT, timeout, queried := false, false, false
		for _, r := range recs {
			if s, ok := r.(string); ok && s == "TIMEOUT" {
				timeout = true
				continue
			}
			m, ok := r.(map[string]any)
			if !ok || len(m) != 1 {
				t.Fatalf("zonedata %s: unexpected record %#v", name, r)
			}
			for k, v := range m {
				switch k {
				case "SPF", "TXT":
					if k == "TXT" {
						hasTXT = true
						if v == "NONE" {
							continue
						}
					}
					rr := &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: txtStrings(v)}
					if k == "SPF" {
						spf = append(spf, rr)
					} else {
						txt = append(txt, rr)
					}
				case "A":
					rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(v.(string)).To4()})
					queried = true
				case "AAAA":
					rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: net.ParseIP(v.(string))})
					queried = true
				case "MX":
					l := v.([]any)
					rrs = append(rrs, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(l[0].(int)), Mx: dns.Fqdn(l[1].(string))})
					queried = true
				case "PTR":
					rrs = append(rrs, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(v.(string))})
					queried = true
				case "CNAME":
					rrs = append(rrs, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: dns.Fqdn(v.(string))})
					queried = true
				default:
					t.Fatalf("zonedata %s: unknown type %s", name, k)
				}
			}
		}
		if !hasTXT {
			txt = spf
		}
		if len(txt) > 0 {
			queried = true
		}
		rrs = append(rrs, txt...)
		if timeout && !queried {
			timeouts = append(timeouts, fq)
		}
	}
	return rrs, timeouts
}

// txtStrings converts a YAML TXT value (a string or a list of strings) into the
// presentation-form strings miekg/dns packs: backslash and quote escaped, raw bytes kept,
// long strings split into 255-byte character-strings.
func txtStrings(v any) []string {
	var in []string
	switch x := v.(type) {
	case string:
		in = []string{x}
	case []any:
		for _, s := range x {
			in = append(in, s.(string))
		}
	}
	out := []string{}
	for _, s := range in {
		for len(s) > 0 || len(out) == 0 {
			n := min(len(s), 255)
			out = append(out, strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s[:n]))
			s = s[n:]
			if len(s) == 0 {
				break
			}
		}
	}
	return out
}

func wantResults(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, s := range x {
			out = append(out, s.(string))
		}
		return out
	}
	return nil
}

// TestRFC7208Suite runs every test of the RFC 7208 suite against a real DNS server on
// loopback (dnstest) serving the suite's zone data through the dnsx client.
func TestRFC7208Suite(t *testing.T) {
	docs := loadSuite(t)
	total, passed := 0, 0
	for _, doc := range docs {
		rrs, timeouts := zoneRRs(t, doc.Zonedata)
		srv := dnstest.New(t)
		srv.AddRR(rrs...)
		for _, n := range timeouts {
			srv.Fail(n, dnstest.Timeout)
		}
		r := srv.ResolverWith(dnsx.ClientConfig{Timeout: 150 * time.Millisecond, Attempts: 1})
		names := make([]string, 0, len(doc.Tests))
		for n := range doc.Tests {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			tc := doc.Tests[name]
			total++
			ok := t.Run(name, func(t *testing.T) {
				ip, err := netip.ParseAddr(tc.Host)
				if err != nil {
					t.Fatalf("bad host %q", tc.Host)
				}
				res, _ := Check(context.Background(), r, ip, tc.Helo, tc.Mailfrom,
					WithReceiver("receivingdomain.com"), WithTimeout(5*time.Second),
					WithClock(func() time.Time { return time.Unix(1700000000, 0) }))
				want := wantResults(tc.Result)
				if !slices.Contains(want, string(res.Status)) {
					t.Fatalf("%s (spec %v): got %s (%s; mechanism %q), want %v", doc.Description, tc.Spec, res.Status, res.Problem, res.Mechanism, want)
				}
				if tc.Explanation != "" && res.Status == Fail {
					wantExp := tc.Explanation
					if wantExp == "DEFAULT" {
						wantExp = ""
					}
					if res.Explanation != wantExp {
						t.Fatalf("explanation %q, want %q", res.Explanation, wantExp)
					}
				}
			})
			if ok {
				passed++
			}
		}
	}
	t.Logf("RFC 7208 suite: %d of %d tests pass", passed, total)
	if passed != total {
		t.Errorf("RFC 7208 suite: %d of %d tests fail", total-passed, total)
	}
	if total < 200 {
		t.Errorf("only %d suite tests loaded", total)
	}
}
