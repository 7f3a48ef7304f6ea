package main

import (
	"bufio"
	"cmp"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

var updateImaptest = flag.Bool("update", false, "rewrite testdata/imaptest-baseline.txt from this run of imaptest")

const imaptestBaseline = "testdata/imaptest-baseline.txt"

// imaptestDir is where scripts/install-test-deps.sh builds imaptest (OUT/run, OUT/tests):
// $PORTCULLIS_IMAPTEST, or .cache/imaptest at the repository root.
func imaptestDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PORTCULLIS_IMAPTEST")
	if dir == "" {
		var err error
		dir, err = filepath.Abs("../../.cache/imaptest")
		require.NoError(t, err)
	}
	for _, p := range []string{"run", "tests/list"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			testenv.Unavailable(t, "imaptest is not built in %s (scripts/install-test-deps.sh builds it)", dir)
		}
	}
	return dir
}

// TestImaptest runs Dovecot's imaptest scripted compliance tests against the real binary
// and holds the result to a ratchet: testdata/imaptest-baseline.txt lists the summary
// figures and every failing group and command. A failure not listed (a regression), a
// listed one that now passes, or different figures fail the test; after a fix, rewrite
// the baseline with -update and commit it, so the list only shrinks (issue 16: to zero).
func TestImaptest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs imaptest's scripted tests against the binary (about 100 s)")
	}
	dir := imaptestDir(t)
	data := t.TempDir()
	// trusted: imaptest logs in with LOGIN on plaintext.
	srv := startPlainServer(t, attackConfig(t, data, ", trusted: true", ""), "mx", "imap")
	pass := postmasterPassword(t, srv)
	host, port, err := net.SplitHostPort(srv.addrs["imap"])
	require.NoError(t, err)

	got := runImaptest(t, dir, "host="+host, "port="+port, "user=postmaster@example.test", "pass="+pass)

	if *updateImaptest {
		require.NoError(t, os.MkdirAll(filepath.Dir(imaptestBaseline), 0o755))
		require.NoError(t, os.WriteFile(imaptestBaseline, []byte(got.baseline()), 0o644))
		t.Logf("wrote %s", imaptestBaseline)
		return
	}
	b, err := os.ReadFile(imaptestBaseline)
	require.NoError(t, err)
	if diff := diffImaptest(string(b), got); diff != "" {
		t.Errorf("imaptest no longer matches %s:\n%s\nAfter a fix, rewrite the baseline: "+
			"go test -run TestImaptest -count=1 ./cmd/portcullis -args -update", imaptestBaseline, diff)
		for _, f := range got.fails {
			if strings.Contains(diff, f.key()) {
				t.Logf("%s", tail(f.detail, 2000))
			}
		}
	}
}

// runImaptest runs imaptest's scripted tests (in dir) with args (host=, port=, user=,
// pass=, ...) and returns what it reported.
func runImaptest(t *testing.T, dir string, args ...string) imaptestResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "run"), append(args, "test="+filepath.Join(dir, "tests"))...)
	cmd.Dir = t.TempDir()
	start := time.Now()
	out, err := cmd.CombinedOutput() // exits non-zero when a test fails
	t.Logf("imaptest ran %v (exit: %v)", time.Since(start).Round(time.Second), err)
	if ctx.Err() != nil {
		t.Fatalf("imaptest did not finish within 6 minutes; its output:\n%s", tail(string(out), 4000))
	}
	got, err := parseImaptest(string(out))
	if err != nil {
		t.Fatalf("%v; imaptest printed:\n%s", err, tail(string(out), 4000))
	}
	t.Logf("%s", strings.Join(got.summary, "; "))
	return got
}

// imaptestResult is what one scripted run of imaptest reported.
type imaptestResult struct {
	summary []string // the three summary lines, verbatim
	groups  []string // failing groups, sorted
	fails   []imaptestFail
}

// imaptestFail is one failing command of a test group.
type imaptestFail struct {
	group   string
	n, of   int // command n of the group's of commands
	line    int // its line in the group's script
	command string
	detail  string // what imaptest printed about it
}

func (f imaptestFail) key() string {
	return fmt.Sprintf("fail %s %d/%d line %d", f.group, f.n, f.of, f.line)
}

var (
	imaptestTestRe    = regexp.MustCompile(`^\*\*\* Test (\S+) command (\d+)/(\d+) \(line (\d+)\)$`)
	imaptestCommandRe = regexp.MustCompile(`^ - Command(?: \(tag [^)]*\))?: (.*)$`)
	imaptestSummaryRe = regexp.MustCompile(`^(\d+ test groups: \d+ failed, \d+ skipped due to missing capabilities|` +
		`base protocol: \d+/\d+ individual commands failed|extensions: \d+/\d+ individual commands failed)$`)
)

// parseImaptest reads imaptest's output: a block per failing command ("*** Test GROUP
// command N/M (line L)", indented detail lines, " - Command: ..."), printed once per
// connection that saw it, then the summary lines.
func parseImaptest(out string) (imaptestResult, error) {
	var r imaptestResult
	seen := map[string]int{} // key -> index in r.fails
	cur := -1
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := imaptestTestRe.FindStringSubmatch(line); m != nil {
			f := imaptestFail{group: m[1]}
			f.n, _ = strconv.Atoi(m[2])
			f.of, _ = strconv.Atoi(m[3])
			f.line, _ = strconv.Atoi(m[4])
			i, ok := seen[f.key()]
			if !ok {
				i = len(r.fails)
				seen[f.key()] = i
				r.fails = append(r.fails, f)
			}
			cur = i
			r.fails[cur].detail += line + "\n"
			continue
		}
		if imaptestSummaryRe.MatchString(line) {
			r.summary = append(r.summary, line)
			cur = -1
			continue
		}
		if cur < 0 {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			cur = -1
			continue
		}
		r.fails[cur].detail += line + "\n"
		if m := imaptestCommandRe.FindStringSubmatch(line); m != nil && r.fails[cur].command == "" {
			r.fails[cur].command = shorten(m[1], 100)
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	// The summary is printed twice when a command fails last; keep the last three.
	if len(r.summary) < 3 {
		return r, fmt.Errorf("imaptest printed no summary (N test groups, base protocol, extensions)")
	}
	r.summary = r.summary[len(r.summary)-3:]
	slices.SortStableFunc(r.fails, func(a, b imaptestFail) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.n, b.n), cmp.Compare(a.line, b.line))
	})
	for _, f := range r.fails {
		if !slices.Contains(r.groups, f.group) {
			r.groups = append(r.groups, f.group)
		}
	}
	return r, nil
}

// baseline renders r as the baseline file.
func (r imaptestResult) baseline() string {
	var b strings.Builder
	b.WriteString(`# What imaptest's scripted compliance tests (Dovecot's imaptest, release-2.3, built by
# scripts/install-test-deps.sh) report against portcullis today: a ratchet. TestImaptest
# fails when a run differs from this file in any line that is not a comment: a new failing
# group or command (a regression), a listed one that now passes, or other figures. After a
# fix, regenerate it and commit it with the fix, so the list only shrinks (issue 16: to 0):
#
#   go test -run TestImaptest -count=1 ./cmd/portcullis -args -update
#
# Lines: the summary, verbatim; "group G" for each failing group; "fail G N/M line L" for
# each failing command (command N of the group's M, at line L of tests/G), then a tab and
# the command as imaptest shows it (for reading only; not compared).
`)
	for _, s := range r.summary {
		b.WriteString(s + "\n")
	}
	for _, g := range r.groups {
		b.WriteString("group " + g + "\n")
	}
	for _, f := range r.fails {
		b.WriteString(f.key() + "\t" + f.command + "\n")
	}
	return b.String()
}

// diffImaptest compares a baseline file with a run, ignoring comments and the command text
// after a tab, and describes every difference ("" when there is none).
func diffImaptest(baseline string, got imaptestResult) string {
	keys := func(s string) []string {
		var ks []string
		for _, l := range strings.Split(s, "\n") {
			l, _, _ = strings.Cut(l, "\t")
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				ks = append(ks, l)
			}
		}
		return ks
	}
	want, have := keys(baseline), keys(got.baseline())
	var b strings.Builder
	for _, k := range have {
		if !slices.Contains(want, k) {
			fmt.Fprintf(&b, "  + %s (not in the baseline: a regression, or new figures)\n", k)
		}
	}
	for _, k := range want {
		if !slices.Contains(have, k) {
			fmt.Fprintf(&b, "  - %s (in the baseline, not in this run: fixed? update the baseline)\n", k)
		}
	}
	return b.String()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func TestParseImaptest(t *testing.T) {
	out := `*** Test atoms command 4/5 (line 13)
 - failed: Expected tagged reply 'ok', got 'NO [SERVERBUG] Internal server error'
 - Command (tag 5.9): list "" x

Error: u[10]: Keyword used without being in FLAGS: $k: * 5 FETCH (UID 5 FLAGS ($k))
*** Test list command 3/23 (line 11)
 - failed: Missing 1 untagged replies (0 mismatches)
 - Command: list "" $mailbox
*** Test list command 3/23 (line 11)
 - failed: Missing 1 untagged replies (0 mismatches)
 - Command: list "" $mailbox
*** Test subscribe command 23/24 (line 48)
 - failed: Uninitialized variable: sep
 - Command: lsub "" $mailbox${sep}%

71 test groups: 3 failed, 0 skipped due to missing capabilities
base protocol: 3/448 individual commands failed
extensions: 0/73 individual commands failed
`
	r, err := parseImaptest(out)
	require.NoError(t, err)
	require.Equal(t, []string{"atoms", "list", "subscribe"}, r.groups)
	require.Len(t, r.fails, 3)
	require.Equal(t, "fail list 3/23 line 11", r.fails[1].key())
	require.Equal(t, `list "" x`, r.fails[0].command)
	require.Equal(t, "base protocol: 3/448 individual commands failed", r.summary[1])
	require.Empty(t, diffImaptest(r.baseline(), r))

	fixed, err := parseImaptest(strings.Replace(out, "*** Test atoms", "*** Test atoms-gone", 1))
	require.NoError(t, err)
	d := diffImaptest(r.baseline(), fixed)
	require.Contains(t, d, "+ fail atoms-gone 4/5 line 13")
	require.Contains(t, d, "- fail atoms 4/5 line 13")
	require.Contains(t, d, "- group atoms")

	_, err = parseImaptest("connection refused\n")
	require.Error(t, err)
}
