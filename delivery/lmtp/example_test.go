package lmtp_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
)

func ExampleParseDest() {
	for _, d := range []string{"lmtp:unix:/run/dovecot/lmtp", "lmtp:store.example.test:24"} {
		network, addr, _ := lmtp.ParseDest(d)
		fmt.Println(network, addr)
	}
	// Output:
	// unix /run/dovecot/lmtp
	// tcp store.example.test:24
}

func ExampleClient_Deliver() {
	c, _ := lmtp.New(lmtp.Config{LocalName: "mx1.example.test"})
	defer c.Close()
	msg := strings.NewReader("From: a@example.net\r\nSubject: hi\r\n\r\nhello\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, _ := c.Deliver(ctx, "unix:/run/dovecot/lmtp", "a@example.net",
		[]string{"alice@example.test", "bob@example.test"}, msg, msg.Size())
	for _, r := range res {
		switch r.Status {
		case lmtp.Delivered: // record it as delivered
		case lmtp.Permanent: // bounce with r.Reply
		default: // retry later
		}
		fmt.Println(r.Rcpt, r.Status, r.Reply)
	}
}
