package delivery_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/spool"
)

func Example() {
	data, _ := os.MkdirTemp("", "portcullis")
	defer os.RemoveAll(data)

	sp, _ := spool.Open(filepath.Join(data, "spool"), spool.Config{})
	defer sp.Close()
	local, _ := delivery.NewMaildir(delivery.MaildirConfig{Root: filepath.Join(data, "mail"), Users: []string{"postmaster@example.test"}})
	router, _ := delivery.NewLocalRouter(delivery.LocalRouterConfig{Domains: []string{"example.test"}, Local: local})
	q, _ := delivery.New(delivery.Config{Hostname: "mx.example.test"}, sp, router)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()

	env := spool.Envelope{From: "alice@example.org", To: []string{"postmaster@example.test"}, ReceivedAt: time.Now()}
	sp.Enqueue(ctx, env, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"))

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	q.WaitIdle(wctx)
	wcancel()
	cancel()
	<-done

	box, _ := local.Path("postmaster@example.test")
	msgs, _ := box.Scan()
	ids, _ := sp.List()
	fmt.Println(len(msgs), "delivered,", len(ids), "queued")
	// Output: 1 delivered, 0 queued
}
