package spf_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/spf"
)

func ExampleCheck() {
	// An in-process DNS server on loopback stands in for the Internet.
	srv := dnstest.New(&testing.T{}, dnstest.Zone{
		"example.com.":      {`TXT "v=spf1 include:_spf.example.com -all"`},
		"_spf.example.com.": {`TXT "v=spf1 ip4:192.0.2.0/24 ~all"`},
	})
	defer srv.Close()

	for _, ip := range []string{"192.0.2.25", "198.51.100.7"} {
		res, err := spf.Check(context.Background(), srv.Resolver(), netip.MustParseAddr(ip),
			"mail.example.com", "alice@example.com", spf.WithReceiver("mx.example.net"))
		fmt.Println(ip, res.Status, res.Mechanism, err)
	}
	// Output:
	// 192.0.2.25 pass include:_spf.example.com <nil>
	// 198.51.100.7 fail -all <nil>
}
