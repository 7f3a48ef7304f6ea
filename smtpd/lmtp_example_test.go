package smtpd_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/local"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/store"
)

// An LMTP listener on a unix socket delivering into the mail store, fed by the LMTP
// client of delivery/lmtp; each recipient gets its own reply.
func Example_lmtp() {
	dir, _ := os.MkdirTemp("", "lmtp-example")
	defer os.RemoveAll(dir)
	st, _ := store.New(store.Config{Dir: filepath.Join(dir, "mail"), Quota: 1 << 20})
	defer st.Close()
	deliverer, _ := local.New(local.Config{Store: st,
		Exists: func(_ context.Context, addr string) (bool, error) { return addr == "alice@example.test", nil }})
	sock := filepath.Join(dir, "lmtp.sock")
	srv, err := smtpd.New(smtpd.Config{
		Hostname:  "store.example.test",
		DataDir:   dir,
		Listeners: []smtpd.ListenerConfig{{Name: "lmtp", Addr: "unix:" + sock, Mode: smtpd.ModeLMTP}},
	}, smtpd.Deps{Local: deliverer, Quota: deliverer.CheckQuota, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	if err := srv.Listen(); err != nil {
		panic(err)
	}
	go func() { done <- srv.Serve(ctx) }()

	c, _ := lmtp.New(lmtp.Config{})
	msg := "From: <bob@example.net>\r\nSubject: hi\r\n\r\nHello\r\n"
	res, err := c.Deliver(ctx, "unix:"+sock, "bob@example.net",
		[]string{"alice+hi@example.test", "nobody@example.test"}, strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		panic(err)
	}
	for _, r := range res {
		fmt.Println(r.Rcpt, r.Code, r.Enhanced)
	}
	c.Close()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	// Output:
	// alice+hi@example.test 250 2.0.0
	// nobody@example.test 550 5.1.1
}
