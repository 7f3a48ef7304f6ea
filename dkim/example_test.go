package dkim_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

func Example() {
	dir, _ := os.MkdirTemp("", "dkim-example")
	defer os.RemoveAll(dir)

	// `portcullis dkim keygen example.com` does this: a key under the data dir, and the
	// TXT record to publish.
	name, txt, err := dkim.GenerateKey(dir, "example.com", "2026a", dkim.AlgoEd25519)
	if err != nil {
		panic(err)
	}
	fmt.Println(name, strings.HasPrefix(txt, "v=DKIM1; k=ed25519; p="))

	// Publish it (in a test DNS server) with a DMARC policy.
	srv := dnstest.New(&testing.T{}, dnstest.Zone{
		name + ".":            {`TXT "` + txt + `"`},
		"_dmarc.example.com.": {`TXT "v=DMARC1; p=reject"`},
	})
	defer srv.Close()

	// Sign on submission...
	signer, _ := dkim.NewSigner(dkim.SignerConfig{Dir: dir})
	msg := []byte("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n")
	signed, err := signer.SignMessage(msg)
	if err != nil {
		panic(err)
	}

	// ...verify and apply DMARC on reception.
	ctx := context.Background()
	sigs, _ := dkim.Verify(ctx, srv.Resolver(), bytes.NewReader(signed), nil)
	rec, _ := dkim.LookupDMARC(ctx, srv.Resolver(), "example.com")
	ev := dkim.Evaluate(rec, dkim.Input{FromDomain: "example.com", DKIMPassDomains: []string{sigs[0].Domain}})
	fmt.Println(sigs[0].Domain, sigs[0].Result, ev.Result, ev.Policy)
	fmt.Println(dkim.AuthResults("mx.example.net", dkim.AuthResultsInput{
		Signatures: sigs, DMARCResult: ev.Result, FromDomain: "example.com",
	}))
	// Output:
	// 2026a._domainkey.example.com true
	// example.com pass pass reject
	// mx.example.net; dkim=pass header.d=example.com header.i=@example.com header.s=2026a; dmarc=pass header.from=example.com
}
