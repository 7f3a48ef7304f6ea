package delivery

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzMailbox checks that no recipient address, however hostile, names a maildir outside
// the root.
func FuzzMailbox(f *testing.F) {
	for _, s := range []string{"bob@example.test", "Bob+tag@Example.TEST", "../x@example.test", "x@..", "a\x00b@c", "@", "x@a/b", `"a b"@c`} {
		f.Add(s)
	}
	root := f.TempDir()
	m, _ := NewMaildir(MaildirConfig{Root: root})
	f.Fuzz(func(t *testing.T, addr string) {
		d, err := m.Path(addr)
		if err != nil {
			return
		}
		rel, err := filepath.Rel(root, string(d))
		if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) != 2 || !strings.HasSuffix(rel, "/Maildir") {
			t.Fatalf("address %q maps to %q", addr, d)
		}
	})
}

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
