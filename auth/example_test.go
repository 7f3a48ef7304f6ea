package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/bytesize"
)

// One authenticator for SMTP AUTH, IMAP and POP3: local users in DATA/users.db (with
// LDAP added to the chain when configured), behind brute-force throttling.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "auth-example")
	defer os.RemoveAll(dir)

	db, err := auth.OpenDBConfig(auth.DBConfig{
		Path:   auth.DefaultDBPath(dir),
		Argon2: auth.Argon2Params{Memory: bytesize.MiB}, // small for the example; keep the default in production
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	// `portcullis user add alice@example.org --password-stdin`
	if err := db.Add(ctx, "Alice@Example.ORG", "correct horse battery staple"); err != nil {
		fmt.Println(err)
		return
	}
	// The first start of a server: a postmaster with a generated password.
	pw, created, _ := db.EnsureUser(ctx, "postmaster@example.org")
	fmt.Println("postmaster created:", created, "password length:", len(pw))

	// Chain(db, ldap) when a directory is configured.
	a, _ := auth.NewThrottle(auth.Chain(db), auth.ThrottleConfig{FailureDelay: -1})
	client := netip.MustParseAddr("192.0.2.1")

	name, err := a.Authenticate(ctx, "alice@EXAMPLE.org", "correct horse battery staple", client)
	fmt.Println(name, err)
	_, err = a.Authenticate(ctx, "alice@example.org", "guess", client)
	fmt.Println(errors.Is(err, auth.ErrInvalid))

	users, _ := db.List(ctx)
	for _, u := range users {
		fmt.Println(u.Address, u.Scheme)
	}
	// Output:
	// postmaster created: true password length: 26
	// alice@example.org <nil>
	// true
	// alice@example.org argon2id
	// postmaster@example.org argon2id
}
