package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
)

// BenchmarkSink relays 4 KiB messages one at a time to Postfix's smtp-sink (which
// stores nothing), with and without session reuse: the client's own cost per message.
func BenchmarkSink(b *testing.B) {
	sink := postfixtest.StartSinkDiscard(b, "")
	_, p, _ := netSplit(sink.Addr)
	hop := "[127.0.0.1]:" + p
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 62)
	msg := append([]byte("From: a@example.net\r\nTo: b@remote.test\r\nSubject: bench\r\n\r\n"), body...)
	for _, reuse := range []bool{true, false} {
		b.Run(fmt.Sprintf("reuse=%v", reuse), func(b *testing.B) {
			c, _ := relay.New(relay.Config{DisableReuse: !reuse, Logger: quiet})
			defer c.Close()
			start := time.Now()
			for b.Loop() {
				res, err := c.Deliver(context.Background(), hop, "a@example.net", []string{"b@remote.test"}, bytes.NewReader(msg), int64(len(msg)))
				if err != nil || res[0].Status != relay.Delivered {
					b.Fatalf("%v %+v", err, res)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
