package virus_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/virus"
	"github.com/portcullis-mail/portcullis/virus/clamdtest"
)

// BenchmarkScan compares connection reuse (IDSESSION) with a connection per scan, over TCP
// and the unix socket, on a real clamd, for a typical message (4 KiB) and a larger one.
func BenchmarkScan(b *testing.B) {
	d := clamdtest.StartClamd(b, clamdtest.Options{})
	for _, size := range []int{4 << 10, 256 << 10} {
		msg := bytes.Repeat([]byte("Lorem ipsum dolor sit amet.\r\n"), size/29+1)[:size]
		for _, addr := range []struct{ name, addr string }{{"tcp", d.TCPAddr()}, {"unix", d.UnixAddr()}} {
			for _, mode := range []struct {
				name       string
				noSessions bool
			}{{"session", false}, {"dial", true}} {
				c := newClient(b, virus.Config{Addrs: []string{addr.addr}, NoSessions: mode.noSessions})
				b.Run(fmt.Sprintf("%dKiB/%s/%s", size>>10, addr.name, mode.name), func(b *testing.B) {
					b.SetBytes(int64(size))
					for b.Loop() {
						if _, err := c.Scan(b.Context(), bytes.NewReader(msg)); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run(fmt.Sprintf("%dKiB/%s/%s/parallel8", size>>10, addr.name, mode.name), func(b *testing.B) {
					b.SetBytes(int64(size))
					b.SetParallelism(8)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := c.Scan(b.Context(), bytes.NewReader(msg)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		}
	}
}

// BenchmarkSessionVsDial alternates a session scan and a dial-per-scan scan in every
// iteration (at each concurrency), so that both see the same machine load; it reports
// the mean latency of each as session-ns/op and dial-ns/op.
func BenchmarkSessionVsDial(b *testing.B) {
	d := clamdtest.StartClamd(b, clamdtest.Options{})
	msg := bytes.Repeat([]byte("Lorem ipsum dolor sit amet.\r\n"), 200) // 5.8 KB, a typical message
	for _, addr := range []struct{ name, addr string }{{"tcp", d.TCPAddr()}, {"unix", d.UnixAddr()}} {
		sess := newClient(b, virus.Config{Addrs: []string{addr.addr}})
		dial := newClient(b, virus.Config{Addrs: []string{addr.addr}, NoSessions: true})
		for _, par := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/c%d", addr.name, par), func(b *testing.B) {
				var sessNs, dialNs atomic.Int64
				b.SetParallelism(par)
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						// Alternate which goes first so neither always benefits.
						order := []*virus.Client{sess, dial}
						if i%2 == 1 {
							order[0], order[1] = dial, sess
						}
						i++
						for _, c := range order {
							t := time.Now()
							if _, err := c.Scan(b.Context(), bytes.NewReader(msg)); err != nil {
								b.Error(err)
								return
							}
							if c == sess {
								sessNs.Add(int64(time.Since(t)))
							} else {
								dialNs.Add(int64(time.Since(t)))
							}
						}
					}
				})
				b.ReportMetric(float64(sessNs.Load())/float64(b.N), "session-ns/op")
				b.ReportMetric(float64(dialNs.Load())/float64(b.N), "dial-ns/op")
				b.ReportMetric(float64(dialNs.Load())/float64(sessNs.Load()), "dial/session")
			})
		}
	}
}
