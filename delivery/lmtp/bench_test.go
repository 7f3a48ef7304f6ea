package lmtp_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
)

// BenchmarkDovecot delivers 4 KiB messages to one mailbox of a real Dovecot over LMTP,
// one at a time, with and without connection reuse; it reports msgs/s.
func BenchmarkDovecot(b *testing.B) {
	dc := dovecottest.Start(b, "alice@example.test")
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 62)
	msg := append([]byte("From: a@example.net\r\nTo: alice@example.test\r\nSubject: bench\r\n\r\n"), body...)
	for _, reuse := range []bool{true, false} {
		b.Run(fmt.Sprintf("reuse=%v", reuse), func(b *testing.B) {
			c, _ := lmtp.New(lmtp.Config{DisableReuse: !reuse})
			defer c.Close()
			ctx := context.Background()
			start := time.Now()
			for b.Loop() {
				res, err := c.Deliver(ctx, dc.LMTPAddr(), "a@example.net", []string{"alice@example.test"}, bytes.NewReader(msg), int64(len(msg)))
				if err != nil || res[0].Status != lmtp.Delivered {
					b.Fatalf("%v %+v", err, res)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
