package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScaleOutChecks: the directory and PROXY-protocol keys that cannot work together are
// refused at load, naming the keys.
func TestScaleOutChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	for yaml, want := range map[string]string{
		"directory: { ldap: { mail_host_attribute: mailHost } }\n":                                                                "set auth.ldap",
		"directory: { postgres: \"postgres://x\", ldap: {} }\nauth: { ldap: { url: \"ldap://127.0.0.1\", base_dn: \"dc=x\" } }\n": "choose one",
		"imap: { proxy_from: [10.0.0.0/8] }\n":                                                                                    "proxy_from without proxy_protocol",
		"imap: { proxy_protocol: true, proxy_from: [not-a-net] }\n":                                                               "want a CIDR",
		"pop3: { proxy_from: [10.0.0.0/8] }\n":                                                                                    "proxy_from without proxy_protocol",
		"imap: { proxy_protocol: true }\n":                                                                                        "proxy_protocol needs proxy_from",
		"pop3: { proxy_protocol: true }\n":                                                                                        "proxy_protocol needs proxy_from",
	} {
		require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\n"+yaml), 0o644))
		_, err := Load(path, dir)
		require.ErrorContains(t, err, want, yaml)
	}
	require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\nimap: { proxy_protocol: true, proxy_from: [10.0.0.0/8] }\ndirectory: { postgres: \"postgres://db/mail\", cache_ttl: 2s }\n"), 0o644))
	c, err := Load(path, dir)
	require.NoError(t, err)
	require.True(t, c.IMAP.ProxyProtocol)
	require.Equal(t, "postgres://db/mail", c.Directory.Postgres)
}

// TestStatsFollowDirectory: a shared directory in PostgreSQL takes the decision log along,
// unless stats names its own database or file.
func TestStatsFollowDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	for yaml, want := range map[string]string{
		"directory: { postgres: \"postgres://db/mail\" }\n":                                             "postgres://db/mail",
		"directory: { postgres: \"postgres://db/mail\" }\nstats: { postgres: \"postgres://db/log\" }\n": "postgres://db/log",
		"directory: { postgres: \"postgres://db/mail\" }\nstats: { path: /var/log/d.db }\n":             "",
		"stats: {}\n": "",
	} {
		require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\n"+yaml), 0o644))
		c, err := Load(path, dir)
		require.NoError(t, err, yaml)
		require.Equal(t, want, c.Stats.Postgres, yaml)
	}
}

// The Bayes token database follows the shared directory too (issue 21: front-ends
// classify with one site-wide database), unless bayes names its own or stays local.
func TestBayesFollowDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	for yaml, want := range map[string]string{
		"directory: { postgres: \"postgres://db/mail\" }\n":                                               "postgres://db/mail",
		"directory: { postgres: \"postgres://db/mail\" }\nbayes: { postgres: \"postgres://db/bayes\" }\n": "postgres://db/bayes",
		"directory: { postgres: \"postgres://db/mail\" }\nbayes: { local: true }\n":                       "",
		"bayes: { refresh: 5s }\n": "",
	} {
		require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\n"+yaml), 0o644))
		c, err := Load(path, dir)
		require.NoError(t, err, yaml)
		require.Equal(t, want, c.Bayes.Postgres, yaml)
	}
	require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\nbayes: { local: true, postgres: \"postgres://db/bayes\" }\n"), 0o644))
	_, err := Load(path, dir)
	require.ErrorContains(t, err, "bayes.local")
}

// TestMoveFromChecks: move_from needs the PROXY protocol, CIDRs, and no overlap with
// proxy_from (an address in both would have its TLS claims believed).
func TestMoveFromChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	for _, tc := range []struct{ yaml, want string }{
		{"imap: { move_from: [10.0.0.11/32] }\n", "imap: move_from without proxy_protocol"},
		{"pop3: { proxy_protocol: true, proxy_from: [10.0.0.5/32], move_from: [bad] }\n", "pop3: move_from: \"bad\": want a CIDR"},
		{"imap: { proxy_protocol: true, proxy_from: [10.0.0.0/24], move_from: [10.0.0.11] }\n", "imap: move_from 10.0.0.11 overlaps proxy_from 10.0.0.0/24"},
		{"pop3: { proxy_protocol: true, proxy_from: [10.0.0.5/32], move_from: [10.0.0.0/8] }\n", "pop3: move_from 10.0.0.0/8 overlaps proxy_from 10.0.0.5/32"},
	} {
		require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\n"+tc.yaml), 0o644))
		_, err := Load(path, dir)
		require.ErrorContains(t, err, tc.want, tc.yaml)
	}
	require.NoError(t, os.WriteFile(path, []byte("hostname: mx.example.org\nimap: { proxy_protocol: true, proxy_from: [10.0.0.5/32], move_from: [10.0.0.11/32, 10.0.0.12] }\n"), 0o644))
	c, err := Load(path, dir)
	require.NoError(t, err)
	require.Equal(t, []string{"10.0.0.11/32", "10.0.0.12"}, c.IMAP.MoveFrom)
}
