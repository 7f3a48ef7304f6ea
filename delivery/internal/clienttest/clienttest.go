// Package clienttest is what the tests of the LMTP and SMTP clients share: sending a
// message with a deadline (Send) and the benchmark of both, 4 KiB messages delivered one
// at a time to a real peer with and without session reuse (Benchmark).
package clienttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/internal/smtpconn"
)

// Client is what the tests need of lmtp.Client and relay.Client.
type Client interface {
	Deliver(ctx context.Context, dest, from string, rcpts []string, msg io.ReaderAt, size int64) ([]smtpconn.Result, error)
	Close() error
}

// Send sends msg from sender@example.net to rcpts at dest within 30 seconds and checks
// that there is a result for each recipient.
func Send(t testing.TB, c Client, dest string, rcpts []string, msg []byte) ([]smtpconn.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Deliver(ctx, dest, "sender@example.net", rcpts, bytes.NewReader(msg), int64(len(msg)))
	if len(res) != len(rcpts) {
		t.Fatalf("got %d results for %d recipients", len(res), len(rcpts))
	}
	return res, err
}

// Message returns a message of about 4 KiB to rcpt, CRLF line endings.
func Message(rcpt string) []byte {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 62)
	return append([]byte("From: a@example.net\r\nTo: "+rcpt+"\r\nSubject: bench\r\n\r\n"), body...)
}

// Benchmark runs the sub-benchmarks reuse=true and reuse=false: each delivers Message(rcpt) to
// dest from a@example.net, one at a time, with the client newClient returns for it, and
// fails on any result but Delivered.
func Benchmark(b *testing.B, newClient func(reuse bool) Client, dest, rcpt string) {
	msg := Message(rcpt)
	for _, reuse := range []bool{true, false} {
		b.Run(fmt.Sprintf("reuse=%v", reuse), func(b *testing.B) {
			c := newClient(reuse)
			defer c.Close()
			ctx := context.Background()
			start := time.Now()
			for b.Loop() {
				res, err := c.Deliver(ctx, dest, "a@example.net", []string{rcpt}, bytes.NewReader(msg), int64(len(msg)))
				if err != nil || res[0].Status != smtpconn.Delivered {
					b.Fatalf("%v %+v", err, res)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
