package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/spool"
)

// BenchmarkQueueToDovecot measures the delivery side alone: b.N 4 KiB messages already
// in the spool, delivered by the queue manager through the dispatcher over LMTP into a
// real Dovecot (one mailbox per message, 10 users), with and without session reuse.
// msgs/s counts from Run until the queue is idle and the spool empty.
func BenchmarkQueueToDovecot(b *testing.B) {
	users := make([]string, 10)
	for i := range users {
		users[i] = fmt.Sprintf("user%d@example.test", i)
	}
	dc := dovecottest.Start(b, users...)
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 62)
	msg := append([]byte("From: a@example.net\r\nSubject: bench\r\n\r\n"), body...)
	for _, reuse := range []bool{true, false} {
		b.Run(fmt.Sprintf("reuse=%v", reuse), func(b *testing.B) {
			dir := b.TempDir()
			sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer sp.Close()
			ctx := context.Background()
			for i := range b.N {
				if _, err := sp.Enqueue(ctx, spool.Envelope{From: "a@example.net", To: []string{users[i%len(users)]}}, bytes.NewReader(msg)); err != nil {
					b.Fatal(err)
				}
			}
			r, _ := route.New(route.Config{LocalDomains: []string{"example.test"}, LocalTransport: "lmtp:unix:" + dc.LMTPSocket(), Logger: quiet})
			lc, _ := lmtp.New(lmtp.Config{DisableReuse: !reuse})
			defer lc.Close()
			d, _ := dispatch.New(dispatch.Config{Router: r, LMTP: lc})
			q, _ := delivery.New(delivery.Config{Logger: quiet, MinBackoff: time.Hour}, sp, d)
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			b.ResetTimer()
			start := time.Now()
			go func() { done <- q.Run(rctx) }()
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
			defer wcancel()
			for {
				if err := q.WaitIdle(wctx); err != nil {
					b.Fatalf("queue never drained (a delivery deferred?): %v", err)
				}
				if ids, _ := sp.List(); len(ids) == 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
		})
	}
}
