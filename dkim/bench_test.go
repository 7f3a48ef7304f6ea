package dkim

import (
	"bytes"
	"context"
	"testing"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

// BenchmarkVerify verifies one signature with the key served by dnstest through the dnsx
// cache (as in the server, where the key is usually cached).
func BenchmarkVerify(b *testing.B) {
	for _, algo := range []string{AlgoEd25519, AlgoRSA} {
		b.Run(algo, func(b *testing.B) {
			dir := b.TempDir()
			name, txt, err := GenerateKey(dir, "example.com", "s1", algo)
			if err != nil {
				b.Fatal(err)
			}
			srv := dnstest.New(b)
			srv.Set(name, txtRecord(txt))
			cache, err := dnsx.NewCache(srv.Resolver(), dnsx.CacheConfig{})
			if err != nil {
				b.Fatal(err)
			}
			signer, _ := NewSigner(SignerConfig{Dir: dir})
			msg := []byte(string(bytes.Repeat([]byte("From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\n\r\n"), 1)) + string(bytes.Repeat([]byte("a line of body text, about sixty characters long, repeated\r\n"), 200)))
			signed, err := signer.SignMessage(msg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(len(signed)))
			for b.Loop() {
				sigs, err := Verify(ctx, cache, bytes.NewReader(signed), nil)
				if err != nil || len(sigs) != 1 || sigs[0].Result != ResultPass {
					b.Fatalf("%+v %v", sigs, err)
				}
			}
		})
	}
}
