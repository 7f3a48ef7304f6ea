package delivery_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/local"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

// The queue manager as `portcullis serve` wires it: the spool holds accepted mail, the
// dispatcher routes each recipient with the routing maps, and local recipients go into
// the mail store.
func Example() {
	data, _ := os.MkdirTemp("", "portcullis")
	defer os.RemoveAll(data)
	quiet := slog.New(slog.DiscardHandler)

	sp, _ := spool.Open(filepath.Join(data, "spool"), spool.Config{})
	defer sp.Close()
	st, _ := store.New(store.Config{Dir: filepath.Join(data, "mail")})
	defer st.Close()
	deliverer, _ := local.New(local.Config{Store: st})
	routes, _ := route.New(route.Config{LocalDomains: []string{"example.test"}, Logger: quiet})
	router, _ := dispatch.New(dispatch.Config{Router: routes, Local: deliverer, Reinject: sp.Enqueue})
	m, _ := delivery.New(delivery.Config{Hostname: "mx.example.test", Logger: quiet}, sp, router)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()

	env := spool.Envelope{From: "alice@example.org", To: []string{"postmaster@example.test"}, ReceivedAt: time.Now()}
	sp.Enqueue(ctx, env, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"))

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	m.WaitIdle(wctx)
	wcancel()
	cancel()
	<-done

	u, _ := st.Open(context.Background(), "postmaster@example.test")
	defer u.Release()
	s, _ := u.Status(context.Background(), store.Inbox)
	ids, _ := sp.List()
	fmt.Println(s.Messages, "delivered,", len(ids), "queued")
	// Output: 1 delivered, 0 queued
}
