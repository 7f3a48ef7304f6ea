package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMigrateMboxAndUsersCommands runs `migrate mbox` twice (the second copies nothing)
// and `migrate users` from a CSV (a verifiable hash kept, an unverifiable one reported
// with exit status 1, aliases written to the virtual alias file).
func TestMigrateMboxAndUsersCommands(t *testing.T) {
	dir := t.TempDir()
	mbox := filepath.Join(dir, "old.mbox")
	require.NoError(t, os.WriteFile(mbox, []byte("From a@example.net Mon Jan  2 15:04:05 2006\nSubject: one\nStatus: RO\n\nhello\n\n"+
		"From a@example.net Mon Jan  2 15:04:06 2006\nSubject: two\n\nworld\n"), 0o600))
	data := filepath.Join(dir, "data")
	out, err := run(t, "--data", data, "migrate", "mbox", "--target", "alice@example.test", "--folder", "Old", "-q", mbox)
	require.NoError(t, err, out)
	require.Contains(t, out, "copied 2 messages")
	require.Regexp(t, `alice@example.test\s+Old\s+Old\s+2\s+2`, out)
	out, err = run(t, "--data", data, "migrate", "mbox", "--target", "alice@example.test", "--folder", "Old", "-q", mbox)
	require.NoError(t, err, out)
	require.Contains(t, out, "copied 0 messages")
	require.FileExists(t, filepath.Join(data, "mail/example.test/alice/migrate-state.sqlite"))

	csv := filepath.Join(dir, "users.csv")
	require.NoError(t, os.WriteFile(csv, []byte("address,password,aliases\n"+
		"carol@example.test,$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1,c@example.test\n"+
		"erin@example.test,{MD5-CRYPT}$1$x$y,\n"), 0o600))
	aliases := filepath.Join(dir, "virtual")
	out, err = run(t, "--data", data, "migrate", "users", "--csv", csv, "--aliases-out", aliases)
	require.Error(t, err)
	require.Contains(t, err.Error(), "1 accounts could not be migrated")
	require.Regexp(t, `carol@example.test\s+SHA512-CRYPT\s+created`, out)
	require.Regexp(t, `erin@example.test\s+MD5-CRYPT\s+skipped`, out)
	b, _ := os.ReadFile(aliases)
	require.Equal(t, "c@example.test carol@example.test\n", string(b))
	out, _ = run(t, "--data", data, "user", "list")
	require.True(t, strings.Contains(out, "carol@example.test"), out)
}

// TestMigrateSieveCheck: scripts from files are compiled; the broken one is reported.
func TestMigrateSieveCheck(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.sieve"), []byte("require \"fileinto\";\nfileinto \"Junk\";\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.sieve"), []byte("fileinto \"Junk\";\n"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(dir, "main.sieve"), filepath.Join(dir, "active")))
	data := filepath.Join(dir, "data")
	out, err := run(t, "--data", data, "migrate", "sieve", "--dir", dir, "--active", filepath.Join(dir, "active"))
	require.Error(t, err)
	require.Regexp(t, `main\s+true\s+checked`, out)
	require.Regexp(t, `broken\s+false\s+not compiled\s+\S`, out)
	// With a target the script that compiles is stored, active.
	out, err = run(t, "--data", data, "migrate", "sieve", "--dir", dir, "--active", filepath.Join(dir, "active"), "--target", "eve@example.test")
	require.Error(t, err)
	require.Regexp(t, `main\s+true\s+stored`, out)
	out, err = run(t, "--data", data, "sieve", "list", "--user", "eve@example.test")
	require.NoError(t, err, out)
	require.Contains(t, out, "main")
	require.NotContains(t, out, "broken")
	out, err = run(t, "--data", data, "sieve", "get", "--user", "eve@example.test", "main")
	require.NoError(t, err, out)
	require.Equal(t, "require \"fileinto\";\nfileinto \"Junk\";\n", out)
}
