package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/portcullis-mail/portcullis/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "store")
	defer os.RemoveAll(dir)
	s, err := store.New(store.Config{Dir: dir, Quota: 1 << 30})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ctx := context.Background()
	uid, err := s.Deliver(ctx, "alice@example.org", "INBOX", strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), nil)
	if err != nil {
		panic(err)
	}
	u, _ := s.Open(ctx, "alice@example.org")
	defer u.Release()
	st, _ := u.Status(ctx, "INBOX")
	fmt.Println(uid, st.Messages, st.Unseen)
	// Output: 1 1 1
}
