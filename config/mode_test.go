package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestModes: each mode's required keys are named when missing, and what a mode does not
// serve has no address left to bind.
func TestModes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	const pg = "directory: { postgres: \"postgres://db/mail\" }\n"
	const noLMTP = "smtp: { listeners: [ { name: mx, addr: \"127.0.0.1:25\", mode: mx } ] }\n"
	for yaml, want := range map[string]string{
		"mode: cluster\n":                                             `mode "cluster": want standalone, frontend, backend or proxy`,
		"mode: frontend\n" + noLMTP:                                   "mode frontend: set directory.postgres or directory.ldap",
		"mode: frontend\n" + pg:                                       "lmtp is an LMTP listener",
		"mode: backend\n" + pg:                                        "set directory.this_host",
		"directory: { hosts: { \"\": { lmtp: \"x:24\" } } }\n":        "a host without a name",
		"mode: proxy\nproxy: { proxy_maybe: true, local_host: s1 }\n": "a proxy has none",
		"directory: { this_host: s1 }\nproxy: { local_host: s2 }\n":   "name this node differently",
	} {
		require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\n"+yaml), 0o644))
		_, err := Load(path, dir)
		require.ErrorContains(t, err, want, yaml)
	}
	load := func(yaml string) *Config {
		t.Helper()
		require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\n"+yaml), 0o644))
		c, err := Load(path, dir)
		require.NoError(t, err, yaml)
		return c
	}
	require.Equal(t, ModeStandalone, load("").Mode)
	fe := load("mode: frontend\n" + pg + noLMTP)
	require.Empty(t, fe.IMAP.Addr+fe.POP3.Addr+fe.ManageSieve.Addr)
	require.Len(t, fe.SMTP.Listeners, 1)
	px := load("mode: proxy\nproxy: { imap_addr: \"127.0.0.1:143\" }\n")
	require.Empty(t, px.SMTP.Listeners)
	require.Empty(t, px.IMAP.Addr)
	be := load("mode: backend\ndirectory: { postgres: \"postgres://db/mail\", this_host: store1, hosts: { store1: { lmtp: \"10.0.0.1:24\" } } }\n")
	require.Equal(t, "127.0.0.1:1143", be.IMAP.Addr)
	require.Equal(t, "store1", be.Proxy.LocalHost, "directory.this_host names the node for proxy_maybe too")
	h, err := be.Directory.HostOf("store1")
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:24", h.LMTP)
	require.Equal(t, "store1:993", h.IMAP)
	require.Equal(t, "store1:4190", h.ManageSieve)
	_, err = be.Directory.HostOf("store2")
	require.ErrorContains(t, err, "not in directory.hosts")
}
