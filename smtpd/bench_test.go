package smtpd_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// BenchmarkAccept measures the accept path: 4 KiB messages over real sockets from 1, 10
// and 50 concurrent clients (one connection each, many messages per connection, as
// Postfix's smtp-source does), through the rules of testdata/rules.yaml, into a queue
// that fsyncs each message and its directory before the 250.
func BenchmarkAccept(b *testing.B) {
	for _, clients := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ts := start(b, func(c *smtpd.Config, _ *smtpd.Deps) { c.MaxConnectionsPerIP = 100; c.MaxCommands = 1 << 30 })
			addr := ts.addr("mx")
			msg := smtptest.Message("sender@example.net", "bob@example.test", "bench", 4096)
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			t0 := time.Now()
			for range clients {
				wg.Go(func() {
					c, err := smtp.Dial(addr)
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					if err := c.Hello("bench.example.net"); err != nil {
						errs <- err
						return
					}
					for next.Add(1) <= int64(b.N) {
						if err := c.SendMail("sender@example.net", []string{"bob@example.test"}, strings.NewReader(msg)); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(t0)
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			if n := ts.q.count(); n != b.N {
				b.Fatalf("queued %d of %d", n, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
		})
	}
}
