package smtpd

import (
	"bytes"
	"strings"
	"testing"
)

// headerLen is the reference: the length of the header block (the lines before the
// first empty one, or everything).
func headerLen(raw []byte) int {
	for off := 0; off < len(raw); {
		end := bytes.Index(raw[off:], []byte("\r\n"))
		if end < 0 {
			return len(raw)
		}
		if end == 0 {
			return off
		}
		off += end + 2
	}
	return len(raw)
}

func TestHeaderTooLarge(t *testing.T) {
	for _, raw := range []string{"", "\r\n", "\r\nbody", "A: b\r\n\r\n", "A: b\r\n", "A: b", "A: bc\r\n\r\nx",
		"A: " + strings.Repeat("x", 100) + "\r\n\r\nbody" + strings.Repeat("y", 200), "no empty line " + strings.Repeat("z", 300)} {
		for limit := 1; limit < len(raw)+4; limit++ {
			if got, want := headerTooLarge([]byte(raw), limit), headerLen([]byte(raw)) > limit; got != want {
				t.Fatalf("%q limit %d: %v, want %v", raw, limit, got, want)
			}
		}
	}
}

func FuzzHeaderTooLarge(f *testing.F) {
	f.Add([]byte("Subject: x\n\nbody"), 10)
	f.Add([]byte("A: b\n B\n\n"), 7)
	f.Add([]byte("\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		if limit <= 0 || limit > 1<<16 {
			return
		}
		// SMTP data has CRLF line endings only.
		raw := bytes.ReplaceAll(bytes.ReplaceAll(in, []byte("\r"), nil), []byte("\n"), []byte("\r\n"))
		if got, want := headerTooLarge(raw, limit), headerLen(raw) > limit; got != want {
			t.Fatalf("%q limit %d: %v, want %v", raw, limit, got, want)
		}
	})
}
