package directory_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/directory"
)

// The local directory of a single node: every user lives here.
func Example() {
	dir, _ := os.MkdirTemp("", "directory-example")
	defer os.RemoveAll(dir)
	db, err := auth.OpenDB(filepath.Join(dir, "users.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.AddHash(ctx, "alice@example.test", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"); err != nil {
		panic(err)
	}
	d, closer, err := directory.Open(ctx, directory.Config{}, directory.Deps{Users: db})
	if err != nil {
		panic(err)
	}
	defer closer.Close()
	u, err := d.Lookup(ctx, "Alice@Example.test")
	fmt.Printf("%s host=%q err=%v\n", u.Address, u.MailHost, err)
	// Output: alice@example.test host="" err=<nil>
}
