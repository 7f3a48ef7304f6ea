package milter

import (
	"strings"
	"testing"
)

// FuzzSplitHeader: the header block is rebuilt byte for byte from its segments (fields
// and the lines that are no field), whatever the bytes.
func FuzzSplitHeader(f *testing.F) {
	for _, s := range []string{
		"From a@b Sun Dec  6 10:00:00 2026\r\nA: 1\r\njunk\r\n\tcont\r\nB : 2\r\n\r\nbody",
		"A: 1\n\n", "no header at all", "\r\n", " leading\r\nA: b\r\n\r\n", "A: 1\r\nB",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fields, end := splitHeader(raw)
		var b strings.Builder
		for _, fl := range fields {
			b.WriteString(fl.raw)
			if fl.name != "" && !strings.Contains(fl.raw, ":") {
				t.Fatalf("field %q has no colon", fl.raw)
			}
		}
		got, block := b.String(), string(raw[:end])
		if got != block && got+"\r\n" != block && got+"\n" != block {
			t.Fatalf("segments %q do not rebuild the header block %q", got, block)
		}
	})
}
