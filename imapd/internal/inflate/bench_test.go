package inflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"io"
	"testing"
)

// benchStream is 1 MiB of mail-like text compressed at DefaultCompression, flushed
// every 4 KiB as a client does after each command.
func benchStream(b *testing.B) ([]byte, int) {
	var text bytes.Buffer
	for i := 0; text.Len() < 1<<20; i++ {
		text.WriteString("a1 APPEND INBOX {310+}\r\nFrom: someone@example.org\r\nSubject: report ")
		text.WriteString(string(rune('a' + i%26)))
		text.WriteString("\r\n\r\nThe quarterly figures are attached; please review them before Monday.\r\n")
	}
	var out bytes.Buffer
	w, _ := flate.NewWriter(&out, flate.DefaultCompression)
	raw := text.Bytes()
	for i := 0; i < len(raw); i += 4096 {
		w.Write(raw[i:min(i+4096, len(raw))])
		w.Flush()
	}
	w.Close()
	return out.Bytes(), len(raw)
}

// BenchmarkInflate decodes the same stream with this package and with compress/flate
// (go test -bench Inflate -benchtime 20x -count 3 ./imapd/internal/inflate).
func BenchmarkInflate(b *testing.B) {
	stream, n := benchStream(b)
	for _, c := range []struct {
		name string
		open func(r *bufio.Reader) io.Reader
	}{
		{"own", func(r *bufio.Reader) io.Reader { return NewReader(r) }},
		{"compress-flate", func(r *bufio.Reader) io.Reader { return flate.NewReader(r) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(n))
			buf := make([]byte, 4096)
			for b.Loop() {
				r := c.open(bufio.NewReader(bytes.NewReader(stream)))
				for {
					if _, err := r.Read(buf); err != nil {
						break
					}
				}
			}
		})
	}
}
