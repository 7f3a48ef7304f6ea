package delivery

import (
	"bytes"
	"testing"
)

// FuzzCountReceived feeds hostile message headers to the loop detector and the DSN
// header extractor.
func FuzzCountReceived(f *testing.F) {
	f.Add([]byte("Received: a\r\nReceived: b\r\nSubject: x\r\n\r\nbody"))
	f.Add([]byte("received:x\nRECEIVED: y\n\nReceived: not a header\n"))
	f.Add(bytes.Repeat([]byte("x"), 5000))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := countReceived(bytes.NewReader(b))
		if err != nil || n < 0 || n > len(b)/9 {
			t.Fatalf("countReceived = %d, %v", n, err)
		}
		h, err := readHeader(bytes.NewReader(b), 1000)
		if err != nil || len(h) > 1000+4096+2 {
			t.Fatalf("readHeader returned %d bytes, %v", len(h), err)
		}
	})
}
