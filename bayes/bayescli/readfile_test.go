package bayescli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestReadFile checks the message reader on empty, small, exactly-limited and
// over-limit files, and its error on a missing one.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 512, 4096, 100000} {
		want := bytes.Repeat([]byte("x"), n)
		p := filepath.Join(dir, "m")
		if err := os.WriteFile(p, want, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, max := range []int64{1, 512, 4096, 1 << 20} {
			got, err := readFile(p, max)
			if err != nil {
				t.Fatal(err)
			}
			w := want[:min(int64(n), max)]
			if !bytes.Equal(got, w) {
				t.Errorf("size %d, max %d: read %d bytes, want %d", n, max, len(got), len(w))
			}
		}
	}
	if _, err := readFile(filepath.Join(dir, "missing"), 10); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := readFile(dir, 10); err == nil {
		t.Error("reading a directory did not fail")
	}
}
