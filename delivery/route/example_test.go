package route_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/portcullis-mail/portcullis/delivery/route"
)

func Example() {
	dir, _ := os.MkdirTemp("", "route-example")
	defer os.RemoveAll(dir)
	aliases := filepath.Join(dir, "aliases")
	os.WriteFile(aliases, []byte("postmaster: alice, bob\n"), 0o644)
	transport := filepath.Join(dir, "transport")
	os.WriteFile(transport, []byte("partner.test  smtp:[gw.partner.test]:2525\n"), 0o644)

	r, err := route.New(route.Config{
		LocalDomains:   []string{"example.test"},
		LocalUsers:     []string{"alice@example.test", "bob@example.test"},
		Aliases:        aliases,
		Transport:      transport,
		LocalTransport: "lmtp:unix:/run/dovecot/lmtp",
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, rcpt := range []string{"postmaster@example.test", "a@partner.test", "a@elsewhere.test"} {
		ds, _ := r.Resolve(ctx, rcpt)
		for _, d := range ds {
			fmt.Println(rcpt, "->", d.Rcpt, "via", d.Dest())
		}
	}
	ok, _ := r.Valid(ctx, "nobody@example.test")
	fmt.Println("nobody@example.test valid:", ok)
	// Output:
	// postmaster@example.test -> alice@example.test via lmtp:unix:/run/dovecot/lmtp
	// postmaster@example.test -> bob@example.test via lmtp:unix:/run/dovecot/lmtp
	// a@partner.test -> a@partner.test via smtp:[gw.partner.test]:2525
	// a@elsewhere.test -> a@elsewhere.test via smtp:elsewhere.test
	// nobody@example.test valid: false
}
