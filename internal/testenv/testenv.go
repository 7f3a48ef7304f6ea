// Package testenv is what portcullis tests share about their environment: the real peers
// they start (a program that must be installed) and the SpamAssassin public corpus. In CI
// (CI=true) a missing peer or corpus fails the test; elsewhere it skips with a message
// that says how to get it.
//
// Tests and the test-support packages (virus/clamdtest, auth/ldaptest,
// delivery/relay/postfixtest, delivery/lmtp/dovecottest) use it instead of checking CI
// themselves, so the rule is written once.
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

// Unavailable stops the test for a missing peer or data set, or an environment that cannot
// run it: a failure in CI, a skip elsewhere.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// sbin holds the directories daemons are installed in, which a user's PATH often lacks.
var sbin = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// Program returns the path of an installed program, looked up in PATH and then in the
// sbin directories (where Debian installs postfix, slapd, dovecot and clamd), or stops the
// test (Unavailable).
func Program(tb testing.TB, name string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range sbin {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Unavailable(tb, "%s is not installed (scripts/install-test-deps.sh installs it)", name)
	return ""
}

// Corpus returns the exported SpamAssassin corpus ({train,test}/{ham,spam}/*.eml):
// $PORTCULLIS_SA_CORPUS, or .cache/sa-corpus at the repository root, or stops the test
// (Unavailable) when one of the four directories holds no message.
func Corpus(tb testing.TB) string {
	tb.Helper()
	dir, err := corpus()
	if err != nil {
		Unavailable(tb, "%v (scripts/install-test-deps.sh exports it)", err)
	}
	return dir
}

// CorpusIfPresent is Corpus for a test that uses the corpus when it is there and has other
// data besides: it returns "" when the corpus is missing outside CI, and fails in CI.
func CorpusIfPresent(tb testing.TB) string {
	tb.Helper()
	if _, err := corpus(); err != nil && !CI() {
		return ""
	}
	return Corpus(tb)
}

func corpus() (string, error) {
	dir := os.Getenv("PORTCULLIS_SA_CORPUS")
	if dir == "" {
		if root := repoRoot(); root != "" {
			dir = filepath.Join(root, ".cache", "sa-corpus")
		}
	}
	for _, sub := range []string{"train/spam", "train/ham", "test/spam", "test/ham"} {
		if !holdsMessage(filepath.Join(dir, sub)) {
			return "", fmt.Errorf("SpamAssassin corpus missing: no messages in %q", filepath.Join(dir, sub))
		}
	}
	return dir, nil
}

// holdsMessage reports whether dir holds an .eml file, reading no more of it than needed.
func holdsMessage(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if filepath.Ext(n) == ".eml" {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
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
