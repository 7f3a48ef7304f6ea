package testenv_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

func TestCorpus(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "train", "spam"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORTCULLIS_SA_CORPUS", dir)
	if got := testenv.Corpus(t); got != dir {
		t.Fatalf("Corpus = %q, want %q", got, dir)
	}
	// Outside CI a missing corpus skips the test (in CI it would fail it).
	t.Setenv("PORTCULLIS_SA_CORPUS", t.TempDir())
	t.Setenv("CI", "")
	skipped := false
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		testenv.Corpus(t)
	})
	if !skipped {
		t.Fatal("a missing corpus did not skip the test")
	}
}

// A test that needs a real peer asks for it; CI fails without it, a laptop skips.
func ExampleProgram() {
	t := &testing.T{}
	clamd := testenv.Program(t, "clamd")
	_ = clamd // start it on loopback with a config written to t.TempDir() ...
}
