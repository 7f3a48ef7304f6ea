package mailhost_test

import (
	"context"

	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/mailhost"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/directory"
)

// A front-end's final delivery: each local recipient goes by LMTP to the back-end the
// shared directory names, and unknown recipients are refused at RCPT.
func Example() {
	ctx := context.Background()
	cfg := directory.Config{
		Postgres: "postgres://portcullis@db.example.test/mail",
		Hosts: map[string]directory.Host{
			"store1": {LMTP: "10.0.0.11:24"},
			"store2": {LMTP: "10.0.0.12:24"},
		},
	}
	dir, closer, err := directory.Open(ctx, cfg, directory.Deps{})
	if err != nil {
		return
	}
	defer closer.Close()
	lc, _ := lmtp.New(lmtp.Config{LocalName: "mx1.example.test"})
	d, _ := mailhost.New(mailhost.Config{Hosts: cfg}, mailhost.Deps{Directory: dir, LMTP: lc})
	router, _ := route.New(route.Config{LocalDomains: []string{"example.test"}, LocalUserExists: d.Exists})
	_, _ = dispatch.New(dispatch.Config{Router: router, Local: d, LMTP: lc})
}
