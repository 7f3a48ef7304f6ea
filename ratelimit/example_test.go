package ratelimit_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/ratelimit"
)

func Example() {
	// Postfix: smtpd_client_recipient_rate_limit = 2
	l, err := ratelimit.New(ratelimit.Config{ClientRecipientRateLimit: 2}, ratelimit.Deps{Hostname: "mx.example.org"})
	if err != nil {
		panic(err)
	}
	c := &policy.Conn{IP: netip.MustParseAddr("192.0.2.7")}
	for _, rcpt := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		reply := l.Count(context.Background(), ratelimit.Rcpt, c, rcpt)
		fmt.Printf("%d %q\n", c.Rate.Recipients, reply)
	}
	// Output:
	// 1 ""
	// 2 ""
	// 3 "450 4.7.1 Error: too many recipients from 192.0.2.7"
}
