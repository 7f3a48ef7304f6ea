package migrate_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/storetarget"
	"github.com/portcullis-mail/portcullis/store"
)

// Import an mbox file into a user's INBOX; a second run copies nothing.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "migrate-example")
	defer os.RemoveAll(dir)
	mbox := filepath.Join(dir, "inbox.mbox")
	os.WriteFile(mbox, []byte("From bob@example.org Mon Jan  2 15:04:05 2006\nSubject: hi\nStatus: RO\n\nhello\n"), 0o600)

	s, _ := store.New(store.Config{Dir: filepath.Join(dir, "mail")})
	defer s.Close()
	target, _ := storetarget.Open(ctx, s, "alice@example.org")
	defer target.Close()
	state, _ := migrate.OpenState(filepath.Join(dir, "state.sqlite"))
	defer state.Close()
	src, _ := migrate.NewMboxSource(mbox, "")

	opt := migrate.Options{Source: "mbox:" + mbox, TargetUser: "alice@example.org"}
	for range 2 {
		res, err := migrate.Run(ctx, src, target, state, opt)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("copied", res.Totals().Copied)
	}
	// Output:
	// copied 1
	// copied 0
}
