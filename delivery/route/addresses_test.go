package route

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAddresses(t *testing.T) {
	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases")
	virtual := filepath.Join(dir, "virtual")
	require.NoError(t, os.WriteFile(aliases, []byte("sales: alice\nteam: alice, bob\nother: bob\n"), 0o600))
	require.NoError(t, os.WriteFile(virtual, []byte("info@virtual.test alice@example.test\n@catch.test alice@example.test\n"), 0o600))
	r, err := New(Config{LocalDomains: []string{"example.test"}, VirtualDomains: []string{"virtual.test", "catch.test"},
		Aliases: aliases, VirtualAliases: virtual})
	require.NoError(t, err)
	got, err := r.Addresses(context.Background(), "Alice@example.test")
	require.NoError(t, err)
	require.Equal(t, []string{"alice@example.test", "info@virtual.test", "sales@example.test", "team@example.test"}, got)
	got, err = r.Addresses(context.Background(), "carol@example.test")
	require.NoError(t, err)
	require.Equal(t, []string{"carol@example.test"}, got)
}
