package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSieveCLI: check, test, and the script commands on a data dir, as a migration
// loads users' scripts (put, activate), then list, get, deactivate, delete.
func TestSieveCLI(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "vac.sieve")
	require.NoError(t, os.WriteFile(script, []byte("require [\"fileinto\", \"vacation\"];\nif header :contains \"subject\" \"sale\" { fileinto \"Junk\"; stop; }\nvacation :days 3 \"away\";\n"), 0o644))
	bad := filepath.Join(dir, "bad.sieve")
	require.NoError(t, os.WriteFile(bad, []byte("require \"nope\";\n"), 0o644))
	msg := filepath.Join(dir, "m.eml")
	require.NoError(t, os.WriteFile(msg, []byte("From: a@example.net\r\nTo: bob@example.test\r\nSubject: big sale\r\n\r\nhi\r\n"), 0o644))
	data := filepath.Join(dir, "data")

	out, err := run(t, "sieve", "check", script, "--data", data)
	require.NoError(t, err, out)
	require.Contains(t, out, "ok")
	_, err = run(t, "sieve", "check", bad, "--data", data)
	require.Error(t, err)
	require.Contains(t, err.Error(), "line 1:9")

	out, err = run(t, "sieve", "test", script, msg, "--data", data, "--rcpt", "bob@example.test")
	require.NoError(t, err, out)
	require.Contains(t, out, "store message in folder: Junk")
	require.NotContains(t, out, "vacation")

	u := []string{"--data", data, "--user", "Bob@example.test"}
	out, err = run(t, append([]string{"sieve", "put", "vac", script}, u...)...)
	require.NoError(t, err, out)
	_, err = run(t, append([]string{"sieve", "put", "bad", bad}, u...)...)
	require.Error(t, err)
	out, err = run(t, append([]string{"sieve", "activate", "vac"}, u...)...)
	require.NoError(t, err, out)
	out, err = run(t, append([]string{"sieve", "list"}, u...)...)
	require.NoError(t, err, out)
	require.Regexp(t, `vac\s+\d+\s+yes`, out)
	out, err = run(t, append([]string{"sieve", "get", "vac"}, u...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "vacation :days 3")
	_, err = run(t, append([]string{"sieve", "delete", "vac"}, u...)...)
	require.Error(t, err, "the active script cannot be deleted")
	out, err = run(t, append([]string{"sieve", "deactivate"}, u...)...)
	require.NoError(t, err, out)
	out, err = run(t, append([]string{"sieve", "delete", "vac"}, u...)...)
	require.NoError(t, err, out)
	out, err = run(t, append([]string{"sieve", "list"}, u...)...)
	require.NoError(t, err, out)
	require.NotContains(t, out, "vac ")
}
