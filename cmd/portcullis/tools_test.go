package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestDKIMKeygenZone puts the records `portcullis dkim keygen` prints, RSA (about 410
// bytes, more than one DNS character-string holds) and Ed25519, into a zone file and has
// BIND's named-checkzone load it, as an admin pasting them would.
func TestDKIMKeygenZone(t *testing.T) {
	checkzone := testenv.Program(t, "named-checkzone")
	dir := t.TempDir()
	var records []string
	for _, k := range []struct{ selector, algo string }{{"rsa1", "rsa"}, {"ed1", "ed25519"}} {
		out, err := run(t, "dkim", "keygen", "example.test", "--selector", k.selector, "--algo", k.algo, "--data", dir)
		require.NoError(t, err, out)
		_, rec, ok := strings.Cut(strings.TrimSuffix(out, "\n"), "\n\n")
		require.True(t, ok, out)
		require.True(t, strings.HasPrefix(rec, k.selector+"._domainkey.example.test. IN TXT "), rec)
		records = append(records, rec)
	}
	require.Contains(t, records[0], "\n", "the RSA record is one line, one string")

	zone := func(recs ...string) string {
		path := filepath.Join(t.TempDir(), "example.test.zone")
		z := "$TTL 3600\n" +
			"example.test. IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 3600\n" +
			"example.test. IN NS ns.example.test.\n" +
			"ns.example.test. IN A 192.0.2.1\n" + strings.Join(recs, "\n") + "\n"
		require.NoError(t, os.WriteFile(path, []byte(z), 0o644))
		return path
	}
	out, err := exec.Command(checkzone, "example.test", zone(records...)).CombinedOutput()
	require.NoError(t, err, "named-checkzone refused the printed records:\n%s\n%s", out, strings.Join(records, "\n"))

	// The record as it was printed before, one quoted string: BIND refuses it, so the
	// check above means something.
	joined := strings.NewReplacer("( ", "", " )", "", "\"\n\t\"", "").Replace(records[0])
	out, err = exec.Command(checkzone, "example.test", zone(joined)).CombinedOutput()
	require.Error(t, err, "named-checkzone accepted a TXT string over 255 bytes:\n%s", out)
}
