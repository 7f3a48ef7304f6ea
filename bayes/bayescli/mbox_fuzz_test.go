package bayescli

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzMbox splits arbitrary bytes as an mbox: never a panic, and the messages never
// hold more bytes than the file.
func FuzzMbox(f *testing.F) {
	f.Add([]byte("From a@b Mon Sep  9 12:21:16 2002\nSubject: x\n\n>From y\nbody\nFrom c@d\n\nz\n"))
	f.Add([]byte("From "))
	f.Add([]byte("no envelope line\nFrom x\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "mbox")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		total := 0
		err := eachMbox(context.Background(), p, func(m Message) error {
			total += len(m.Raw)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if total > len(data) {
			t.Fatalf("messages hold %d bytes of a %d-byte file", total, len(data))
		}
	})
}
