package virus_test

import (
	"bytes"
	"fmt"
	"testing"

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
