package virus

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// Config configures a Client: the clamd daemons to use and the limits of each scan. The
// zero value of every field but Addrs means "use the default".
type Config struct {
	// Addrs lists the daemons, tried in rotation: "unix:/run/clamav/clamd.ctl",
	// "tcp:127.0.0.1:3310". A bare absolute path means unix, a bare host:port means tcp.
	Addrs []string `yaml:"addrs"`
	// Timeout bounds one whole scan, failover included (default 2m).
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds connecting to one daemon (default 2s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// WriteTimeout bounds writing one chunk of the message (default 10s).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ReplyTimeout bounds the wait for the verdict after the last chunk, that is the
	// daemon's scanning time (default 60s).
	ReplyTimeout time.Duration `yaml:"reply_timeout"`
	// ChunkSize is the size of an INSTREAM chunk (default 64KiB, at most 16MiB).
	ChunkSize bytesize.Size `yaml:"chunk_size"`
	// MaxSize stops streaming a message larger than this and reports
	// ErrTooLarge without waiting for the daemon to refuse it. Set it to the daemons'
	// StreamMaxLength (or lower). 0 means no client-side limit.
	MaxSize bytesize.Size `yaml:"max_size"`
	// NoSessions disables connection reuse: each scan opens its own connection, as
	// clamdscan does. By default scans reuse IDSESSION connections (faster, see README).
	NoSessions bool `yaml:"no_sessions"`
	// MaxIdle bounds the idle session connections kept per daemon (default 16).
	MaxIdle int `yaml:"max_idle"`
	// IdleTimeout closes session connections idle for longer than this (default 20s);
	// keep it below clamd's own idle timeout (30s unless clamd.conf says otherwise).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// FailureThreshold is the number of consecutive failures after which a daemon is taken
	// out of rotation (default 3).
	FailureThreshold int `yaml:"failure_threshold"`
	// Cooldown is how long a failing daemon stays out of rotation before a PING may bring
	// it back (default 10s).
	Cooldown time.Duration `yaml:"cooldown"`
}

// Defaults.
const (
	DefaultTimeout          = 2 * time.Minute
	DefaultConnectTimeout   = 2 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultReplyTimeout     = 60 * time.Second
	DefaultChunkSize        = 64 << 10
	DefaultMaxIdle          = 16
	DefaultIdleTimeout      = 20 * time.Second
	DefaultFailureThreshold = 3
	DefaultCooldown         = 10 * time.Second

	maxChunkSize = 16 << 20
	maxDaemons   = 64
)

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Timeout, DefaultTimeout)
	set(&c.ConnectTimeout, DefaultConnectTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.ReplyTimeout, DefaultReplyTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	set(&c.Cooldown, DefaultCooldown)
	if c.ChunkSize <= 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxIdle <= 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	return c
}

// parseAddr splits "unix:/path", "tcp:host:port", "/path" or "host:port" into a network and
// an address for net.Dial.
func parseAddr(s string) (network, address string, err error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "unix:"):
		network, address = "unix", strings.TrimPrefix(s, "unix:")
		if address == "" {
			return "", "", fmt.Errorf("clamd address %q: empty socket path", s)
		}
	case strings.HasPrefix(s, "tcp:"):
		network, address = "tcp", strings.TrimPrefix(s, "tcp:")
	case strings.HasPrefix(s, "/"):
		network, address = "unix", s
	default:
		network, address = "tcp", s
	}
	if network == "tcp" {
		host, port, err := net.SplitHostPort(address)
		if err != nil || host == "" || port == "" {
			return "", "", fmt.Errorf("clamd address %q: want unix:/path or tcp:host:port", s)
		}
	}
	return network, address, nil
}
