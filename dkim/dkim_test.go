package dkim

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

const testMsg = "From: Alice <alice@mail.example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: lunch\r\n" +
	"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@mail.example.com>\r\n" +
	"\r\n" +
	"Noon at the usual place?\r\n"

// txtRecord quotes a TXT value for a dnstest zone, split in 255-byte strings.
func txtRecord(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	parts = append(parts, v)
	return `TXT "` + strings.Join(parts, `" "`) + `"`
}

func TestSignAndVerify(t *testing.T) {
	dir := t.TempDir()
	srv := dnstest.New(t)
	for _, tc := range []struct{ domain, selector, algo string }{
		{"mail.example.com", "ed1", AlgoEd25519},
		{"example.org", "rsa1", AlgoRSA},
	} {
		name, txt, err := GenerateKey(dir, tc.domain, tc.selector, tc.algo)
		if err != nil {
			t.Fatal(err)
		}
		if name != tc.selector+"._domainkey."+tc.domain || !strings.HasPrefix(txt, "v=DKIM1; k=") {
			t.Fatalf("record %s %s", name, txt)
		}
		srv.Set(name, txtRecord(txt))
		if fi, err := os.Stat(filepath.Join(dir, tc.domain+"."+tc.selector+".key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file: %v %v", fi, err)
		}
	}
	if _, _, err := GenerateKey(dir, "example.org", "rsa1", AlgoRSA); err == nil {
		t.Fatal("GenerateKey overwrote a key")
	}
	s, err := NewSigner(SignerConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Ed25519, the From: domain's own key.
	signed, err := s.SignMessage([]byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := Verify(ctx, srv.Resolver(), bytes.NewReader(signed), nil)
	if err != nil || len(sigs) != 1 || sigs[0].Result != ResultPass || sigs[0].Domain != "mail.example.com" || sigs[0].Selector != "ed1" {
		t.Fatalf("ed25519: %+v %v", sigs, err)
	}
	// A selector that cannot be a DNS name has no key: permerror, without a query.
	odd := bytes.Replace(signed, []byte("s=ed1;"), []byte("s=e(d)1;"), 1)
	sigs, _ = Verify(ctx, srv.Resolver(), bytes.NewReader(odd), nil)
	if len(sigs) != 1 || sigs[0].Result != ResultPermError || !strings.Contains(sigs[0].Reason, "no key") {
		t.Fatalf("odd selector: %+v", sigs)
	}
	// A changed body fails.
	tampered := bytes.Replace(signed, []byte("Noon"), []byte("Nine"), 1)
	sigs, _ = Verify(ctx, srv.Resolver(), bytes.NewReader(tampered), nil)
	if len(sigs) != 1 || sigs[0].Result != ResultFail {
		t.Fatalf("tampered: %+v", sigs)
	}

	// RSA-2048 for a subdomain From: falls back to the organizational domain's key.
	msg := strings.Replace(testMsg, "alice@mail.example.com", "alice@lists.example.org", 1)
	signed, err = s.SignMessage([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ = Verify(ctx, srv.Resolver(), bytes.NewReader(signed), nil)
	if len(sigs) != 1 || sigs[0].Result != ResultPass || sigs[0].Domain != "example.org" {
		t.Fatalf("rsa: %+v", sigs)
	}

	// Key faults: revoked, missing, DNS timeout, SERVFAIL.
	srv.Set("rsa1._domainkey.example.org", `TXT "v=DKIM1; k=rsa; p="`)
	if sigs, _ = Verify(ctx, srv.Resolver(), bytes.NewReader(signed), nil); sigs[0].Result != ResultPermError {
		t.Fatalf("revoked: %+v", sigs)
	}
	srv.Set("rsa1._domainkey.example.org")
	if sigs, _ = Verify(ctx, srv.Resolver(), bytes.NewReader(signed), nil); sigs[0].Result != ResultPermError || !strings.Contains(sigs[0].Reason, "no key") {
		t.Fatalf("missing: %+v", sigs)
	}
	srv.Fail("rsa1._domainkey.example.org", dnstest.Timeout)
	if sigs, _ = Verify(ctx, srv.Resolver(), bytes.NewReader(signed), nil); sigs[0].Result != ResultTempError {
		t.Fatalf("timeout: %+v", sigs)
	}
	srv.Fail("rsa1._domainkey.example.org", dnstest.ServFail)
	if sigs, _ = Verify(ctx, srv.Resolver(), bytes.NewReader(signed), nil); sigs[0].Result != ResultTempError {
		t.Fatalf("servfail: %+v", sigs)
	}

	// No key for the domain at all.
	msg = strings.Replace(testMsg, "alice@mail.example.com", "alice@elsewhere.test", 1)
	if _, err := s.SignMessage([]byte(msg)); err == nil || !strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("unknown domain signed: %v", err)
	}
	if _, err := NewSigner(SignerConfig{Dir: dir, Headers: []string{"Subject"}}); err == nil {
		t.Fatal("signer without From accepted")
	}
	if _, _, err := GenerateKey(dir, "example.org", "../x", AlgoRSA); err == nil {
		t.Fatal("path in selector accepted")
	}
}

// TestRFC8463Example verifies the signed example message of RFC 8463 Appendix A (an
// Ed25519 and an RSA signature) with the keys the RFC publishes, served by dnstest.
func TestRFC8463Example(t *testing.T) {
	srv := dnstest.New(t, dnstest.Zone{
		"brisbane._domainkey.football.example.com.": {`TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`},
		"test._domainkey.football.example.com.":     {`TXT "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"`},
	})
	raw, err := os.ReadFile("testdata/rfc8463.eml")
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := Verify(context.Background(), srv.Resolver(), bytes.NewReader(raw), nil)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("%+v %v", sigs, err)
	}
	for i, sel := range []string{"brisbane", "test"} {
		if s := sigs[i]; s.Result != ResultPass || s.Selector != sel || s.Domain != "football.example.com" {
			t.Errorf("signature %d: %+v", i, s)
		}
	}
	// With MaxSignatures 1 the second is reported without being checked.
	sigs, _ = Verify(context.Background(), srv.Resolver(), bytes.NewReader(raw), &VerifyOptions{MaxSignatures: 1})
	if len(sigs) != 2 || sigs[0].Result != ResultPass || sigs[1].Result != ResultPermError {
		t.Fatalf("max 1: %+v", sigs)
	}
}

func TestStripForgedAuthResults(t *testing.T) {
	raw := "Authentication-Results: mx.portcullis.test; spf=pass smtp.mailfrom=a@b.test\r\n" +
		"Authentication-Results: (forged) MX.Portcullis.Test.; dkim=pass header.d=b.test\r\n" +
		"Authentication-Results: mx.portcullis.test 1; none\r\n" +
		"Authentication-Results: mx.upstream.test; dkim=pass header.d=b.test\r\n" +
		"Authentication-Results: mx.portcullis.testing; dkim=pass\r\n" +
		"From: a@b.test\r\n\r\nbody\r\n"
	msg, err := textproto.ReadHeader(bufioReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if n := StripForgedAuthResults(&msg, "mx.portcullis.test"); n != 3 {
		t.Fatalf("removed %d, want 3", n)
	}
	left := msg.Values("Authentication-Results")
	if len(left) != 2 || !strings.HasPrefix(left[0], "mx.upstream.test") || !strings.HasPrefix(left[1], "mx.portcullis.testing") {
		t.Fatalf("left: %q", left)
	}
}

func TestAuthResults(t *testing.T) {
	v := AuthResults("mx.portcullis.test", AuthResultsInput{
		SPFResult: "pass", SPFMailFrom: "alice@example.com",
		Signatures: []Signature{
			{Domain: "example.com", Selector: "s1", Identifier: "@example.com", Result: ResultPass},
			{Domain: "evil.test", Selector: "x", Result: ResultPermError, Reason: "no key for signature\r\nX-Injected: 1"},
		},
		DMARCResult: "pass", FromDomain: "example.com", Policy: "reject",
	})
	if strings.ContainsAny(v, "\r\n") {
		t.Fatalf("header injection: %q", v)
	}
	id, results, err := authres.Parse(v)
	if err != nil || id != "mx.portcullis.test" || len(results) != 4 {
		t.Fatalf("%q: %s %d %v", v, id, len(results), err)
	}
	for _, want := range []string{"spf=pass smtp.mailfrom=alice@example.com", "dkim=pass header.d=example.com header.i=@example.com header.s=s1", "dkim=permerror", "dmarc=pass header.from=example.com policy.dmarc=reject"} {
		if !strings.Contains(v, want) {
			t.Errorf("%q lacks %q", v, want)
		}
	}
	if v := AuthResults("mx.test", AuthResultsInput{}); v != "mx.test; dkim=none" {
		t.Fatalf("empty: %q", v)
	}
}

func TestFromDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Alice <alice@Example.COM>":                      "example.com",
		"alice@example.com":                              "example.com",
		"alice@example.com (Alice)":                      "example.com",
		`"Doe, John" <john@x.example.org>, b@other.test`: "x.example.org",
		"=?x-unknown?q?Alice?= <alice@example.com>":      "example.com",
		"undisclosed":                                    "",
		"<@>":                                            "",
		"":                                               "",
	} {
		if got := FromDomain(in); got != want {
			t.Errorf("FromDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
