package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// load writes doc as portcullis.yaml in a temporary data dir and loads it.
func load(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o644))
	return Load(path, dir)
}

// The top-level keys are not keys of the sections that use them: written there, they
// would have been overwritten silently; now they are an error naming the key and line.
func TestTopLevelKeysOnlyAtTheTop(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"smtp:\n  hostname: other.example\n", "line 2: unknown key hostname (hostname is a top-level key of the server config"},
		{"smtp:\n  data_dir: /tmp\n", "line 2: unknown key data_dir (data_dir is a top-level key of the server config"},
		{"smtp:\n  local_domains: [a.example]\n", "line 2: unknown key local_domains (local_domains is a top-level key of the server config"},
		{"smtp:\n  max_recipients: 5\n  trusted_networks: [10.0.0.0/8]\n", "line 3: unknown key trusted_networks (trusted_networks is a top-level key of the server config"},
		{"routing:\n  local_domains: [a.example]\n", "line 2: unknown key local_domains (local_domains is a top-level key of the server config"},
	} {
		_, err := load(t, tc.doc)
		require.ErrorContains(t, err, "portcullis.yaml", tc.doc)
		require.ErrorContains(t, err, tc.want, tc.doc)
	}

	c, err := load(t, "hostname: mx.example.org\nlocal_domains: [example.org]\ntrusted_networks: [192.0.2.0/24]\n")
	require.NoError(t, err)
	require.Equal(t, "mx.example.org", c.SMTP.Hostname)
	require.Equal(t, c.DataDir, c.SMTP.DataDir)
	require.Equal(t, []string{"example.org"}, c.SMTP.LocalDomains)
	require.Equal(t, []string{"example.org"}, c.Routing.LocalDomains)
	require.Equal(t, []string{"192.0.2.0/24"}, c.SMTP.TrustedNetworks)
}

// The rule file's policies do not repeat the server's identity either.
func TestPolicyAuthservID(t *testing.T) {
	_, err := ParseRuleFile([]byte("policies:\n  dmarc: { dmarc: { authserv_id: other.example } }\n"), "rules.yaml", Deps{AuthservID: "mx.example.org"})
	require.ErrorContains(t, err, "unknown key authserv_id (authserv_id is a top-level key of the server config)")
}

// Keys that default from the top level are honoured when set.
func TestSectionOverridesHonoured(t *testing.T) {
	c, err := load(t, `hostname: mx.example.org
delivery: { hostname: dsn.example.org }
relay: { hostname: out.example.org }
lmtp: { local_name: lmtp.example.org }
pop3: { hostname: pop.example.org }
store: { dir: /srv/mail }
dkim: { sign: { dir: /etc/portcullis/dkim } }
authserv_id: auth.example.org
`)
	require.NoError(t, err)
	require.Equal(t, "dsn.example.org", c.Delivery.Hostname)
	require.Equal(t, "out.example.org", c.Relay.Hostname)
	require.Equal(t, "lmtp.example.org", c.LMTP.LocalName)
	require.Equal(t, "pop.example.org", c.POP3.Hostname)
	require.Equal(t, "/srv/mail", c.Store.Dir)
	require.Equal(t, "/etc/portcullis/dkim", c.DKIM.Sign.Dir)
	require.Equal(t, "auth.example.org", c.AuthservID)

	c, err = load(t, "hostname: mx.example.org\n")
	require.NoError(t, err)
	require.Equal(t, "mx.example.org", c.Delivery.Hostname)
	require.Equal(t, filepath.Join(c.DataDir, "mail"), c.Store.Dir)
	require.Equal(t, filepath.Join(c.DataDir, "dkim"), c.DKIM.Sign.Dir)
}

// Sizes are bytes with an optional unit, under one name each; the old names fail.
func TestSizes(t *testing.T) {
	c, err := load(t, `smtp: { max_message_size: 10MiB, max_data_memory: 1GiB, max_line_size: 2KiB }
store: { quota: 2GiB, max_message_size: 50MB }
imap: { max_fetch_size: 16MiB, cache_size: 64 MiB }
pop3: { max_line_size: 512 }
auth: { users: { argon2: { memory: 32MiB } } }
dns: { udp_size: 1232 }
`)
	require.NoError(t, err)
	require.Equal(t, 10*bytesize.MiB, c.SMTP.MaxMessageSize)
	require.Equal(t, bytesize.GiB, c.SMTP.MaxDataMemory)
	require.Equal(t, 2*bytesize.KiB, c.SMTP.MaxLineSize)
	require.Equal(t, 2*bytesize.GiB, c.Store.Quota)
	require.Equal(t, 50*bytesize.MB, c.Store.MaxMessageSize)
	require.Equal(t, 16*bytesize.MiB, c.IMAP.MaxFetchSize)
	require.Equal(t, 64*bytesize.MiB, c.IMAP.CacheSize)
	require.Equal(t, bytesize.Size(512), c.POP3.MaxLineSize)
	require.Equal(t, 32*bytesize.MiB, c.Auth.Users.Argon2.Memory)
	require.Equal(t, bytesize.Size(1232), c.DNS.UDPSize)

	for _, old := range []string{
		"smtp: { max_message_bytes: 1000 }",
		"smtp: { max_line_length: 1000 }",
		"store: { quota_bytes: 1000 }",
		"store: { max_message_bytes: 1000 }",
		"imap: { max_fetch_bytes: 1000 }",
		"imap: { cache_bytes: 1000 }",
		"pop3: { max_line_bytes: 1000 }",
		"auth: { users: { argon2: { memory_kib: 1000 } } }",
		"auth: { users: { verify_cache_size: 1000 } }",
		"relay: { max_sign_size: 1000 }",
	} {
		_, err := load(t, old+"\n")
		require.ErrorContains(t, err, "line 1: unknown key", old)
	}

	// Every bad value is reported at once, each with its line.
	_, err = load(t, "smtp:\n  max_message_size: 32M\nstore:\n  quota: lots\n")
	require.ErrorContains(t, err, `line 2: size "32M": unit "M" could mean powers of 1000 or of 1024: write MB or MiB`)
	require.ErrorContains(t, err, `line 4: size "lots": want a number of bytes`)
}

// Durations are Go durations; a bare number is refused rather than read as nanoseconds.
func TestDurations(t *testing.T) {
	c, err := load(t, "smtp: { command_timeout: 90s, data_timeout: 1h30m }\n")
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, c.SMTP.CommandTimeout)
	require.Equal(t, 90*time.Minute, c.SMTP.DataTimeout)

	_, err = load(t, "smtp:\n  command_timeout: 300\n")
	require.ErrorContains(t, err, "line 2: cannot unmarshal !!int `300` into time.Duration: a duration has a unit, such as 30s, 5m or 2h")
}

// A key that another key the admin wrote cancels is an error naming it.
func TestUnhonouredKeys(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"http: { addr: '', pprof: true }\n", "http.pprof"},
		{"delivery: { disable_delay_warning: true, delay_warning: 2h }\n", "delivery.delay_warning"},
		{"routing: { local_users: [a@example.test] }\n", "routing.local_users"},
		{"routing: { local_transport: local, local_users: [a@example.test] }\n", "routing.local_users"},
	} {
		_, err := load(t, tc.doc)
		require.ErrorContains(t, err, tc.want, tc.doc)
	}
	_, err := load(t, "local_domains: [example.test]\nrouting: { local_transport: 'lmtp:unix:/run/dovecot/lmtp', local_users: [a@example.test] }\n")
	require.NoError(t, err)
}
