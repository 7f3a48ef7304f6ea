package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// e2eBayesRules: a confident spam score rejects, the unsure band is tagged with a header,
// and every accepted message carries its score.
const e2eBayesRules = `policies:
  bayes: { bayes: {} }
rules:
  - name: bayes-spam
    stage: data
    if: bayes.score > 0.99
    reject: 554 5.7.1 "message looks like spam"
  - name: bayes-unsure
    stage: data
    if: bayes.unsure
    add_header: "X-E2E-Bayes: unsure"
  - name: bayes-score
    stage: data
    if: bayes.tokens >= 0
    add_header: "X-E2E-Bayes-Score: {{bayes.score}}"
`

// firstFiles returns the first n .eml files of dir in name order (deterministic).
func firstFiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	require.NoError(t, err)
	sort.Strings(files)
	return files[:min(n, len(files))]
}

// copyFiles copies files into a new directory dst (a "folder of .eml" for bayes train).
func copyFiles(t *testing.T, files []string, dst string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dst, 0o755))
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644))
	}
}

// runBinary runs the built portcullis binary and returns its standard output.
func runBinary(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "portcullis %s:\n%s", strings.Join(args, " "), stderr.String())
	return stdout.String()
}

type bayesLine struct {
	File    string  `json:"file"`
	Score   float64 `json:"score"`
	Verdict string  `json:"verdict"`
}

// TestE2EBayes trains the token database with `portcullis bayes train` on part of the
// train split of the SpamAssassin corpus, starts the real server with a bayes policy and
// sends messages of the test split through SMTP:
//   - every message `portcullis bayes classify` scores above 0.99 gets 554 5.7.1 at DATA
//     (at least one spam does), every other one is accepted (at least one ham is);
//   - the server's score of each accepted message (in a header added by a rule) agrees
//     with the CLI's;
//   - a message in the unsure band is accepted with the unsure header; one scored as ham
//     has none.
func TestE2EBayes(t *testing.T) {
	corpus := testenv.Corpus(t)
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
	})
	cfg := e2eConfig(t, dir, dns, e2eBayesRules, "")

	// A few hundred of each class keep training under ~10 s with the race detector.
	copyFiles(t, firstFiles(t, filepath.Join(corpus, "train/spam"), 500), filepath.Join(dir, "train/spam"))
	copyFiles(t, firstFiles(t, filepath.Join(corpus, "train/ham"), 700), filepath.Join(dir, "train/ham"))
	out := runBinary(t, "bayes", "train", "--config", cfg, "--spam", filepath.Join(dir, "train/spam"), "--ham", filepath.Join(dir, "train/ham"))
	require.Contains(t, out, "500 spam and 700 ham", out)

	// The CLI's verdict on the whole test split, to pick and check the messages sent.
	out = runBinary(t, "bayes", "classify", "--json", "--config", cfg, filepath.Join(corpus, "test/spam"), filepath.Join(corpus, "test/ham"))
	cli := map[string]bayesLine{}
	var unsure []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l bayesLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		cli[filepath.Base(l.File)] = l
		if l.Verdict == "unsure" && l.Score > 0.25 && l.Score < 0.45 {
			unsure = append(unsure, l.File)
		}
	}
	require.NotEmpty(t, unsure, "no test message in the unsure band")
	sort.Strings(unsure)

	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]

	send := func(path string) error {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		msg := strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n")
		c := e2eDial(t, addr, "127.0.0.1", "client.example.net")
		defer c.Close()
		stage, err := e2eSend(c, "sender@example.net", "postmaster@example.test", msg)
		if err != nil && stage != "data" {
			t.Fatalf("%s refused at %s (not by bayes): %v", filepath.Base(path), stage, err)
		}
		return err
	}
	files := append(firstFiles(t, filepath.Join(corpus, "test/spam"), 15), firstFiles(t, filepath.Join(corpus, "test/ham"), 15)...)
	files = append(files, unsure[0])
	accepted := map[string]bool{} // by Message-ID-free key: the file's base name
	var spamRejected, hamAccepted int
	for _, f := range files {
		l, ok := cli[filepath.Base(f)]
		require.True(t, ok, "%s not classified by the CLI", f)
		err := send(f)
		isSpam := strings.Contains(f, "/test/spam/")
		switch {
		case l.Score > 0.995:
			require.Equal(t, 554, smtpCode(err), "%s scored %.4f by the CLI: %v", filepath.Base(f), l.Score, err)
			require.Contains(t, smtpMessage(err), "5.7.1 message looks like spam")
			if isSpam {
				spamRejected++
			}
		case l.Score < 0.985:
			require.NoError(t, err, "%s scored %.4f by the CLI", filepath.Base(f), l.Score)
			accepted[filepath.Base(f)] = true
			if !isSpam {
				hamAccepted++
			}
		default: // too near the threshold for the Received field we add to not matter
			if err == nil {
				accepted[filepath.Base(f)] = true
			}
		}
	}
	require.Positive(t, spamRejected, "no test spam was rejected")
	require.Positive(t, hamAccepted, "no test ham was accepted")

	// Delivered messages carry the server's score; it agrees with the CLI's, and the
	// unsure one carries the unsure header.
	got := waitDelivered(t, dir, len(accepted))
	require.Len(t, got, len(accepted))
	body := func(path string) string {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(raw)
	}
	seenUnsure := false
	for _, m := range got {
		name := ""
		for n := range accepted {
			ids := headerFields(body(filepath.Join(corpus, dirOf(n), n)), "Message-ID")
			if len(ids) > 0 && strings.Contains(m, ids[0]) {
				name = n
			}
		}
		require.NotEmpty(t, name, "delivered message not among those sent:\n%s", headerBlock(m))
		scores := headerFields(m, "X-E2E-Bayes-Score")
		require.Len(t, scores, 1, headerBlock(m))
		s, err := strconv.ParseFloat(scores[0], 64)
		require.NoError(t, err, scores[0])
		require.InDelta(t, cli[name].Score, s, 0.05, "%s: server score %v, CLI %v", name, s, cli[name].Score)
		u := headerFields(m, "X-E2E-Bayes")
		if name == filepath.Base(unsure[0]) {
			require.Equal(t, []string{"unsure"}, u, "unsure message %s (server score %v)", name, s)
			seenUnsure = true
		} else if cli[name].Verdict == "ham" && cli[name].Score < 0.1 {
			require.Empty(t, u, "%s scored %v is not unsure", name, s)
		}
	}
	require.True(t, seenUnsure, "the unsure message was not delivered")
	t.Logf("sent %d test messages: %d spam rejected with 554, %d ham accepted, %d delivered; unsure %s (CLI %.3f)",
		len(files), spamRejected, hamAccepted, len(got), filepath.Base(unsure[0]), cli[filepath.Base(unsure[0])].Score)
}

// dirOf returns the corpus sub-directory of a test-split file name.
func dirOf(name string) string {
	if strings.HasPrefix(name, "spam") {
		return "test/spam"
	}
	return "test/ham"
}
