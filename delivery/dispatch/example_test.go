package dispatch_test

import (
	"context"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/spool"
)

// The delivery side of an MX in front of Dovecot: local mail by LMTP, the rest by SMTP.
func Example() {
	sp, err := spool.Open("/var/spool/portcullis", spool.Config{})
	if err != nil {
		return
	}
	router, _ := route.New(route.Config{
		LocalDomains:   []string{"example.test"},
		Aliases:        "/etc/portcullis/aliases",
		Transport:      "/etc/portcullis/transport",
		LocalTransport: "lmtp:unix:/run/dovecot/lmtp",
	})
	resolver, _ := dnsx.NewClient(dnsx.ClientConfig{})
	lc, _ := lmtp.New(lmtp.Config{LocalName: "mx.example.test"})
	rc, _ := relay.New(relay.Config{Hostname: "mx.example.test", Resolver: resolver})
	d, _ := dispatch.New(dispatch.Config{Router: router, LMTP: lc, Relay: rc, Reinject: sp.Enqueue})
	q, _ := delivery.New(delivery.Config{Hostname: "mx.example.test"}, sp, d)
	_ = q.Run(context.Background())
}
