package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestE2EBayesPostgres: a running server (a front-end) classifies with the site-wide
// token database in PostgreSQL (bayes.postgres), which `portcullis bayes train`, another
// process, trains while it runs: the server starts untrained and accepts a spam, then
// rejects spam once its refresh has read the training, without a restart.
func TestE2EBayesPostgres(t *testing.T) {
	corpus := testenv.Corpus(t)
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
	})
	cfg := e2eConfig(t, dir, dns, e2eBayesRules, "bayes: { postgres: \""+dsn+"\", refresh: 500ms }\n")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	spam := firstFiles(t, filepath.Join(corpus, "test/spam"), 40)
	send := func(path string) error {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		msg := strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n")
		c := e2eDial(t, srv.addrs["mx"], "127.0.0.1", "client.example.net")
		defer c.Close()
		stage, err := e2eSend(c, "sender@example.net", "postmaster@example.test", msg)
		if err != nil && stage != "data" {
			t.Fatalf("%s refused at %s (not by bayes): %v", filepath.Base(path), stage, err)
		}
		return err
	}
	require.NoError(t, send(spam[0]), "an untrained database rejected a message")

	copyFiles(t, firstFiles(t, filepath.Join(corpus, "train/spam"), 300), filepath.Join(dir, "train/spam"))
	copyFiles(t, firstFiles(t, filepath.Join(corpus, "train/ham"), 400), filepath.Join(dir, "train/ham"))
	out := runBinary(t, "bayes", "train", "--config", cfg, "--spam", filepath.Join(dir, "train/spam"), "--ham", filepath.Join(dir, "train/ham"))
	require.Contains(t, out, "300 spam and 400 ham", out)
	out = runBinary(t, "bayes", "stats", "--config", cfg)
	require.Contains(t, out, "postgres://", out)
	require.NoFileExists(t, filepath.Join(dir, "data", "bayes", "global.db"), "the CLI trained a local SQLite database")

	// the server reads the training within its refresh interval: some spam of the test
	// split is rejected (not all: the corpus's 554 threshold is 0.99)
	deadline := time.Now().Add(30 * time.Second)
	rejected := 0
	for _, f := range spam[1:] {
		if err := send(f); err != nil {
			require.Equal(t, 554, smtpCode(err), "%s: %v", filepath.Base(f), err)
			rejected++
		}
		if rejected >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.GreaterOrEqual(t, rejected, 3, "the server never classified with the database bayes train filled")
}
