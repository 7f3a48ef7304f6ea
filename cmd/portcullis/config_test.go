package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// dkim keygen writes where the server reads the keys: dkim.sign.dir when set (it wrote
// to DATA/dkim whatever the config said).
func TestDKIMKeygenHonoursSignDir(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	cfg := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("data_dir: "+filepath.Join(dir, "data")+"\ndkim: { sign: { dir: "+keys+" } }\n"), 0o644))
	out, err := run(t, "dkim", "keygen", "example.test", "--selector", "s1", "--algo", "ed25519", "--config", cfg)
	require.NoError(t, err, out)
	_, err = os.Stat(filepath.Join(keys, "example.test.s1.key"))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "data", "dkim"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
