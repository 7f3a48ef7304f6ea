package testenv_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// skipped runs f as a subtest and reports whether it skipped.
func skipped(t *testing.T, f func(t *testing.T)) bool {
	t.Helper()
	var s bool
	t.Run("sub", func(t *testing.T) {
		defer func() { s = t.Skipped() }()
		f(t)
	})
	return s
}

func TestCorpus(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"train/spam", "train/ham", "test/spam", "test/ham"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, "1.eml"), []byte("Subject: x\n\nx\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PORTCULLIS_SA_CORPUS", dir)
	t.Setenv("CI", "")
	if got := testenv.Corpus(t); got != dir {
		t.Fatalf("Corpus = %q, want %q", got, dir)
	}
	if got := testenv.CorpusIfPresent(t); got != dir {
		t.Fatalf("CorpusIfPresent = %q, want %q", got, dir)
	}
	// Outside CI a missing corpus skips the test (in CI it would fail it); a split
	// without messages counts as missing.
	if err := os.Remove(filepath.Join(dir, "test/ham/1.eml")); err != nil {
		t.Fatal(err)
	}
	if !skipped(t, func(t *testing.T) { testenv.Corpus(t) }) {
		t.Fatal("a missing corpus did not skip the test")
	}
	// CorpusIfPresent goes on without it.
	if skipped(t, func(t *testing.T) {
		if got := testenv.CorpusIfPresent(t); got != "" {
			t.Errorf("CorpusIfPresent = %q without a corpus", got)
		}
	}) {
		t.Fatal("CorpusIfPresent skipped")
	}
}

func TestProgram(t *testing.T) {
	t.Setenv("CI", "")
	if p := testenv.Program(t, "go"); filepath.Base(p) != "go" {
		t.Fatalf("Program(go) = %q", p)
	}
	if !skipped(t, func(t *testing.T) { testenv.Program(t, "portcullis-no-such-program") }) {
		t.Fatal("a missing program did not skip the test")
	}
	// Not in PATH, but in an sbin directory (where Debian installs the daemons).
	t.Setenv("PATH", t.TempDir())
	if _, err := os.Stat("/sbin/ldconfig"); err == nil {
		if p := testenv.Program(t, "ldconfig"); p != "/sbin/ldconfig" && p != "/usr/sbin/ldconfig" {
			t.Fatalf("Program(ldconfig) = %q", p)
		}
	}
}

// A test that needs a real peer asks for it; CI fails without it, a laptop skips.
func ExampleProgram() {
	t := &testing.T{}
	clamd := testenv.Program(t, "clamd")
	_ = clamd // start it on loopback with a config written to t.TempDir() ...
}
