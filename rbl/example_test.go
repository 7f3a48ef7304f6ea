package rbl_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/rbl"
)

func Example() {
	// A stand-in for zen.spamhaus.org: 127.0.0.2 is the test entry every DNSBL lists.
	srv, err := dnstest.Start(dnstest.Zone{
		"2.0.0.127.zen.example.": {"A 127.0.0.2", "A 127.0.0.10", `TXT "see https://zen.example/127.0.0.2"`},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	client, _ := dnsx.NewClient(dnsx.ClientConfig{Servers: []string{srv.Addr()}, Timeout: time.Second})
	resolver, _ := dnsx.NewCache(client, dnsx.CacheConfig{})
	ctx := context.Background()

	// The core API.
	l, _ := rbl.NewClient(resolver).Lookup(ctx, "zen.example", netip.MustParseAddr("127.0.0.2"))
	fmt.Println(l.Name, l.Codes)

	// The policy: PBL codes (10, 11) weigh nothing, SBL/XBL codes weigh 3.
	p, _ := rbl.New(rbl.Config{RBL: rbl.Specs{"zen.example=127.0.0.[2..9]*3", "zen.example=127.0.0.[10;11]*0"}, TXT: true}, rbl.Deps{Resolver: resolver})
	r := p.CheckConnect(ctx, policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("127.0.0.2")}))
	fmt.Println(r.Status, r.Reason, r.Score, r.Facts["codes"], r.Facts["txt"])
	// Output:
	// 2.0.0.127.zen.example. [127.0.0.2 127.0.0.10]
	// fail rbl.listed 3 [127.0.0.2 127.0.0.10] see https://zen.example/127.0.0.2
}
