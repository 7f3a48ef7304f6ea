// Package testenv is what portcullis tests share about their environment: the real peers
// they start (a program that must be installed) and the SpamAssassin public corpus. In CI
// (CI=true) a missing peer or corpus fails the test; elsewhere it skips with a message
// that says how to get it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CI reports whether the tests run in CI, where nothing may be skipped for lack of a peer.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable stops the test for a missing peer: a failure in CI, a skip elsewhere.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...) + " (scripts/install-test-deps.sh installs it)"
	if CI() {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// Program returns the path of an installed program, or stops the test (Unavailable).
func Program(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(tb, "%s is not installed", name)
	}
	return p
}

// Corpus returns the exported SpamAssassin corpus ({train,test}/{ham,spam}/*.eml):
// $PORTCULLIS_SA_CORPUS, or .cache/sa-corpus at the repository root, or stops the test.
func Corpus(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("PORTCULLIS_SA_CORPUS")
	if dir == "" {
		if root := repoRoot(); root != "" {
			dir = filepath.Join(root, ".cache", "sa-corpus")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "train", "spam")); err != nil {
		Unavailable(tb, "SpamAssassin corpus missing at %q", dir)
	}
	return dir
}

// repoRoot is the nearest directory above the working directory holding go.mod.
func repoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
