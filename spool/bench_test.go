package spool

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEnqueue measures durable Enqueue of 4 KiB messages with 1, 10 and 50 concurrent
// writers (SMTP sessions): into the incoming log (the default) or one file per message,
// each with group commit and without (one fsync per message).
func BenchmarkEnqueue(b *testing.B) {
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\r\n"), 64) // 4 KiB
	for _, store := range []string{"log", "files"} {
		for _, group := range []bool{true, false} {
			for _, conc := range []int{1, 10, 50} {
				name := fmt.Sprintf("%s/group=%v/writers=%d", store, group, conc)
				b.Run(name, func(b *testing.B) {
					s, err := Open(b.TempDir(), Config{DisableGroupCommit: !group, DisableLog: store == "files"})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					env := Envelope{From: "a@example.org", To: []string{"b@example.test"}, ReceivedAt: time.Now()}
					var next atomic.Int64
					var wg sync.WaitGroup
					b.SetBytes(int64(len(msg)))
					b.ResetTimer()
					start := time.Now()
					for range conc {
						wg.Go(func() {
							for next.Add(1) <= int64(b.N) {
								if _, err := s.Enqueue(context.Background(), env, bytes.NewReader(msg)); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
				})
			}
		}
	}
}
