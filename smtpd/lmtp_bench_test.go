package smtpd_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
)

// BenchmarkLMTP delivers 4 KiB messages over LMTP with delivery/lmtp's client (sessions
// reused), into our listener and store (fsync of file, directory and index before each
// 250) and into a real Dovecot configured by dovecottest, in the same run: one client to
// one mailbox, and 4 clients to 4 mailboxes. It reports msgs/s; compare the two peers.
func BenchmarkLMTP(b *testing.B) {
	users := []string{"alice@example.test", "bob@example.test", "carol@example.test", "dave@example.test"}
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 62)
	msg := append([]byte("From: a@example.net\r\nTo: alice@example.test\r\nSubject: bench\r\n\r\n"), body...)

	e := startLMTP(b, 0, nil)
	dc := dovecottest.Start(b, users...)
	for _, peer := range []struct{ name, dest string }{{"portcullis", e.addr("lmtp")}, {"dovecot", dc.LMTPAddr()}} {
		for _, clients := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/clients=%d", peer.name, clients), func(b *testing.B) {
				c, _ := lmtp.New(lmtp.Config{MaxIdle: clients})
				defer c.Close()
				start := time.Now()
				var n atomic.Int64
				var wg sync.WaitGroup
				for i := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for n.Add(1) <= int64(b.N) {
							if !deliverBench(b, c, peer.dest, users[i], msg) {
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			})
		}
	}
}

// deliverBench delivers one message and reports a failure (b.Error: it runs in several
// goroutines).
func deliverBench(b *testing.B, c *lmtp.Client, dest, user string, msg []byte) bool {
	res, err := c.Deliver(context.Background(), dest, "a@example.net", []string{user}, bytes.NewReader(msg), int64(len(msg)))
	if err != nil || res[0].Status != lmtp.Delivered {
		b.Errorf("%v %+v", err, res)
		return false
	}
	return true
}
