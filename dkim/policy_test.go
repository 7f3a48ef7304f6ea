package dkim

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/policy"
)

func TestPolicy(t *testing.T) {
	dir := t.TempDir()
	srv := dnstest.New(t, dnstest.Zone{
		"example.com.":        {`TXT "v=spf1 ip4:192.0.2.10 -all"`},
		"_dmarc.example.com.": {`TXT "v=DMARC1; p=reject; adkim=r; aspf=r"`},
		"evil.test.":          {`TXT "v=spf1 +all"`},
		"slow.test.":          {`TXT "v=spf1 +all"`},
		"_dmarc.slow.test.":   {`TXT "v=DMARC1; p=reject"`},
	})
	srv.Fail("_dmarc.slow.test", dnstest.Timeout)
	for _, d := range []string{"example.com", "evil.test"} {
		name, txt, err := GenerateKey(dir, d, "s1", AlgoEd25519)
		if err != nil {
			t.Fatal(err)
		}
		srv.Set(name, txtRecord(txt))
	}
	signer, err := NewSigner(SignerConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{AuthservID: "mx.portcullis.test"}, Deps{Resolver: srv.Resolver()})
	if err != nil {
		t.Fatal(err)
	}
	decl := p.DeclareFacts()

	msg := func(from string, signFor string) []byte {
		m := []byte(strings.Replace(testMsg, "Alice <alice@mail.example.com>", from, 1))
		if signFor != "" {
			sig, err := signer.Sign(signFor, bytes.NewReader(m))
			if err != nil {
				t.Fatal(err)
			}
			m = append([]byte(sig), m...)
		}
		return m
	}
	for _, tc := range []struct {
		name, ip, mailFrom string
		raw                []byte
		dmarc, policy      string
		spf, dkim          bool
		passDomains        []string
	}{
		{"signed and spf", "192.0.2.10", "bounce@example.com", msg("a@example.com", "example.com"), "pass", "reject", true, true, []string{"example.com"}},
		{"signed, forwarded", "198.51.100.1", "fwd@elsewhere.test", msg("a@example.com", "example.com"), "pass", "reject", false, true, []string{"example.com"}},
		{"spf only", "192.0.2.10", "bounce@example.com", msg("a@example.com", ""), "pass", "reject", true, false, []string{}},
		{"spoofed", "198.51.100.1", "x@evil.test", msg("a@example.com", "evil.test"), "fail", "reject", false, false, []string{"evil.test"}},
		{"subdomain from, relaxed", "192.0.2.10", "bounce@example.com", msg("a@news.example.com", ""), "pass", "reject", true, false, []string{}},
		{"no record", "198.51.100.1", "x@evil.test", msg("a@evil.test", ""), "none", "", true, false, []string{}},
		{"two From fields", "192.0.2.10", "bounce@example.com", []byte("From: a@example.com\r\n" + testMsg), "permerror", "", false, false, []string{}},
		{"no From domain", "192.0.2.10", "bounce@example.com", msg("undisclosed-sender:;", ""), "permerror", "", false, false, []string{}},
		{"dns timeout", "198.51.100.1", "x@slow.test", msg("a@slow.test", ""), "temperror", "", true, false, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr(tc.ip), HELO: "client.test"})
			tx.Hostname = "mx.portcullis.test"
			tx.Envelope.From = address.Parse(tc.mailFrom)
			tx.Message = policy.NewMessage(tc.raw, time.Now())
			start := time.Now()
			r := p.CheckData(context.Background(), tx)
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %s", d)
			}
			f := r.Facts
			if string(r.Status) != tc.dmarc || f["dmarc"] != tc.dmarc || f["policy"] != tc.policy ||
				f["aligned_spf"] != tc.spf || f["aligned_dkim"] != tc.dkim || r.Reason != "dmarc."+tc.dmarc {
				t.Fatalf("status %s reason %s facts %v err %v", r.Status, r.Reason, f, r.Err)
			}
			if fmt.Sprint(f["dkim_pass_domains"]) != fmt.Sprint(tc.passDomains) {
				t.Fatalf("pass domains %v", f["dkim_pass_domains"])
			}
			if (r.Err != nil) != (tc.dmarc == "temperror" || tc.dmarc == "permerror") {
				t.Fatalf("err %v", r.Err)
			}
			for k, v := range f {
				if fmt.Sprintf("%T", v) != fmt.Sprintf("%T", decl[k]) {
					t.Errorf("fact %s is %T, declared %T", k, v, decl[k])
				}
			}
			if len(r.Headers) != 1 || r.Headers[0].Name != "Authentication-Results" {
				t.Fatalf("headers %+v", r.Headers)
			}
			id, results, err := authres.Parse(r.Headers[0].Value)
			if err != nil || id != "mx.portcullis.test" || len(results) < 3 {
				t.Fatalf("A-R %q: %v", r.Headers[0].Value, err)
			}
			if !strings.Contains(r.Headers[0].Value, "dmarc="+tc.dmarc) {
				t.Fatalf("A-R %q", r.Headers[0].Value)
			}
		})
	}
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Fatal("nil resolver accepted")
	}
}

// TestSACorpus runs every corpus message through Verify with an empty DNS (the corpus
// signers' keys are long gone): nothing may panic or fail to parse, an unsigned message
// gives no signatures, and every signature found is reported cleanly as a permerror
// ("no key") or temperror, never as pass.
func TestSACorpus(t *testing.T) {
	root := testenv.Corpus(t)
	srv := dnstest.New(t)
	r := srv.Resolver()
	// The corpus predates DKIM; so that its real-world headers and bodies (LF endings,
	// long lines, odd folding, 8-bit bytes) also exercise signing and verification,
	// every 8th message is signed here and must verify, and fail once altered.
	keys := t.TempDir()
	name, txt, err := GenerateKey(keys, "corpus.test", "sel", AlgoEd25519)
	if err != nil {
		t.Fatal(err)
	}
	srv.Set(name, txtRecord(txt))
	signer, err := NewSigner(SignerConfig{Dir: keys})
	if err != nil {
		t.Fatal(err)
	}
	var files, signed, sigCount, unreadable, resigned int
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".eml") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		hasSig := bytes.Contains(bytes.ToLower(raw), []byte("\ndkim-signature:")) || bytes.HasPrefix(bytes.ToLower(raw), []byte("dkim-signature:"))
		sigs, err := Verify(context.Background(), r, bytes.NewReader(raw), nil)
		if err != nil {
			// A header go-msgauth cannot parse: reported as an error, never a panic.
			unreadable++
			return nil
		}
		if len(sigs) > 0 {
			signed++
			sigCount += len(sigs)
		} else if hasSig {
			t.Errorf("%s: has a DKIM-Signature but none was reported", path)
		}
		for _, s := range sigs {
			if s.Result != ResultPermError && s.Result != ResultTempError {
				t.Errorf("%s: signature %+v verified without a key", path, s)
			}
		}
		if files%8 != 0 {
			return nil
		}
		sig, err := signer.Sign("corpus.test", bytes.NewReader(raw))
		if err != nil {
			t.Errorf("%s: sign: %v", path, err)
			return nil
		}
		m := append([]byte(sig), raw...)
		sigs, err = Verify(context.Background(), r, bytes.NewReader(m), nil)
		if err != nil || len(sigs) == 0 || sigs[0].Result != ResultPass {
			t.Errorf("%s: own signature: %+v %v", path, sigs, err)
			return nil
		}
		resigned++
		// Append a line to the body: the body hash no longer matches.
		m = append(m, []byte("\nP.S. altered\n")...)
		if sigs, _ = Verify(context.Background(), r, bytes.NewReader(m), nil); len(sigs) == 0 || sigs[0].Result != ResultFail {
			t.Errorf("%s: altered message: %+v", path, sigs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SA corpus: %d messages signed here and verified", resigned)
	if files < 1000 {
		t.Fatalf("only %d corpus messages found under %s", files, root)
	}
	t.Logf("SA corpus: %d messages, %d with DKIM signatures (%d signatures), %d with unparseable headers", files, signed, sigCount, unreadable)
	if unreadable > files/20 {
		t.Errorf("%d of %d corpus headers failed to parse", unreadable, files)
	}
}
