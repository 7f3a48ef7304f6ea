package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRateLimitsIPv6Prefix: rate_limits.ipv6_prefix is also how the SMTP listeners'
// max_connections_per_ip counts IPv6 clients (one key for every per-client limit).
func TestRateLimitsIPv6Prefix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte("rate_limits: { ipv6_prefix: 56, client_message_rate_limit: 10 }\n"), 0o644))
	c, err := Load(path, dir)
	require.NoError(t, err)
	require.Equal(t, 56, c.SMTP.IPv6Prefix)
	require.Equal(t, 10, c.RateLimits.ClientMessageRateLimit)
}
