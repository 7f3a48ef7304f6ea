package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/internal/redisclient"
	"github.com/portcullis-mail/portcullis/policy"
)

// Config holds the limits, by the names of Postfix's smtpd(8) parameters without their
// smtpd_ prefix. Zero turns a limit off (Postfix's defaults are all off).
type Config struct {
	// ClientConnectionRateLimit is smtpd_client_connection_rate_limit: connections from
	// one client per rate_time_unit; over it, "421 4.7.0 ... too many connections".
	ClientConnectionRateLimit int `yaml:"client_connection_rate_limit"`
	// ClientMessageRateLimit is smtpd_client_message_rate_limit: MAIL commands per
	// rate_time_unit; over it, "450 4.7.1 Error: too much mail from IP".
	ClientMessageRateLimit int `yaml:"client_message_rate_limit"`
	// ClientRecipientRateLimit is smtpd_client_recipient_rate_limit: RCPT commands per
	// rate_time_unit, accepted or not; over it, "450 4.7.1 Error: too many recipients
	// from IP".
	ClientRecipientRateLimit int `yaml:"client_recipient_rate_limit"`
	// ClientNewTLSSessionRateLimit is smtpd_client_new_tls_session_rate_limit: new (not
	// resumed) TLS sessions per rate_time_unit; over it, "421 4.7.0 ... too many new TLS
	// sessions".
	ClientNewTLSSessionRateLimit int `yaml:"client_new_tls_session_rate_limit"`
	// ClientAuthRateLimit is smtpd_client_auth_rate_limit: AUTH commands per
	// rate_time_unit; over it, "450 4.7.1 Error: too many AUTH commands from IP".
	ClientAuthRateLimit int `yaml:"client_auth_rate_limit"`
	// RateTimeUnit is anvil_rate_time_unit (default 60s).
	RateTimeUnit time.Duration `yaml:"rate_time_unit"`
	// IPv6Prefix aggregates IPv6 clients: one count per prefix (default 64; 128 counts
	// each address). The server applies it to the listeners' max_connections_per_ip too.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// EventLimitExceptions is smtpd_client_event_limit_exceptions: networks (CIDR or
	// address) never counted (default: the trusted networks).
	EventLimitExceptions []string `yaml:"event_limit_exceptions"`
	// UserMessagesPerDay bounds the messages an authenticated user sends in a day
	// (mox's default 1000; 0 turns it off).
	UserMessagesPerDay *int `yaml:"user_messages_per_day"`
	// UserFirstTimeRecipientsPerDay bounds the recipients an authenticated user sends to
	// in a day that they had not sent to before (mox's default 200; 0 turns it off).
	// Known recipients are remembered for 30 days.
	UserFirstTimeRecipientsPerDay *int `yaml:"user_first_time_recipients_per_day"`
	// Redis shares the counters between front-ends (empty addr: in memory). When it
	// fails, the local counters count; after 3 failures in a row it is not asked for 5s
	// (a circuit breaker), so a hung server costs a few timeouts, not one per command.
	Redis RedisConfig `yaml:"redis"`
}

// RedisConfig names a Redis server.
type RedisConfig struct {
	// Addr is host:port (or a unix socket path); empty keeps the counters in memory.
	Addr string `yaml:"addr"`
	// Username and Password authenticate (Redis 6 ACL); empty for none.
	Username string `yaml:"username"`
	// Password is the password of Username (or of the default user).
	Password string `yaml:"password"`
	// DB is the database number (default 0).
	DB int `yaml:"db"`
	// Prefix is put before every key (default "portcullis:rate:").
	Prefix string `yaml:"prefix"`
	// Timeout bounds each call (default 1s).
	Timeout time.Duration `yaml:"timeout"`
}

// Deps are what the server gives the limiter.
type Deps struct {
	// Hostname is our name in the 421 replies.
	Hostname string
	// Counter overrides the counters of Config.Redis (tests, a program's own store).
	Counter Counter
	// Now is the clock of the in-memory counters (nil: time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// The events counted (the SMTP server names them as strings: it does not import this
// package).
const (
	Connect = "connect" // a connection
	NewTLS  = "tls"     // a new (not resumed) TLS session
	Auth    = "auth"    // an AUTH command
	Mail    = "mail"    // a MAIL command
	Rcpt    = "rcpt"    // a RCPT command
)

// Limiter counts events and says when one is over its limit. Safe for concurrent use.
type Limiter struct {
	cfg        Config
	host       string
	exceptions []netip.Prefix
	counter    Counter
	local      *MemoryCounter // the fallback when Redis fails
	closeRDB   func() error
	log        *slog.Logger
	userMsgs   int
	userRcpts  int
	lastWarn   atomic.Int64
}

// knownRecipients is how long a user's recipients count as known.
const knownRecipients = 30 * 24 * time.Hour

// New returns a limiter; with a Redis address it creates the client (the server need not
// be up yet).
func New(cfg Config, deps Deps) (*Limiter, error) {
	if cfg.RateTimeUnit == 0 {
		cfg.RateTimeUnit = 60 * time.Second
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 64
	}
	if cfg.RateTimeUnit < 0 || cfg.IPv6Prefix < 0 || cfg.IPv6Prefix > 128 {
		return nil, errors.New("ratelimit: rate_time_unit must be positive and ipv6_prefix 1..128")
	}
	for _, n := range []int{cfg.ClientConnectionRateLimit, cfg.ClientMessageRateLimit, cfg.ClientRecipientRateLimit, cfg.ClientNewTLSSessionRateLimit, cfg.ClientAuthRateLimit} {
		if n < 0 {
			return nil, errors.New("ratelimit: a limit must not be negative (0 turns it off)")
		}
	}
	l := &Limiter{cfg: cfg, host: deps.Hostname, log: deps.Logger, userMsgs: 1000, userRcpts: 200}
	if cfg.UserMessagesPerDay != nil {
		l.userMsgs = *cfg.UserMessagesPerDay
	}
	if cfg.UserFirstTimeRecipientsPerDay != nil {
		l.userRcpts = *cfg.UserFirstTimeRecipientsPerDay
	}
	if l.userMsgs < 0 || l.userRcpts < 0 {
		return nil, errors.New("ratelimit: a per-user limit must not be negative (0 turns it off)")
	}
	if l.host == "" {
		l.host = "localhost"
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if cfg.EventLimitExceptions != nil { // nil: the trusted clients (Exempt)
		exceptions, err := netlist.Prefixes(cfg.EventLimitExceptions)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: event_limit_exceptions: %w", err)
		}
		l.exceptions = exceptions
	}
	l.local = NewMemoryCounter(deps.Now)
	l.counter = deps.Counter
	if l.counter == nil {
		l.counter = l.local
		if rc := cfg.Redis; rc.Addr != "" {
			if rc.Timeout <= 0 {
				rc.Timeout = time.Second
			}
			c := redisclient.New(redisclient.Options{Addr: rc.Addr, Username: rc.Username, Password: rc.Password, DB: rc.DB, Timeout: rc.Timeout})
			l.counter, l.closeRDB = NewRedisCounter(c, rc.Prefix), c.Close
		}
	}
	return l, nil
}

// Close closes the Redis client the limiter made.
func (l *Limiter) Close() error {
	if l.closeRDB != nil {
		return l.closeRDB()
	}
	return nil
}

// Exempt reports whether c is not counted: in event_limit_exceptions, or, without them,
// in the trusted networks.
func (l *Limiter) Exempt(c *policy.Conn) bool {
	if l.exceptions == nil {
		return c.Trusted
	}
	ip := c.IP.Unmap()
	for _, p := range l.exceptions {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// incr counts on the shared counter, falling back to the local one when it fails.
func (l *Limiter) incr(ctx context.Context, key string, win time.Duration) int64 {
	n, err := l.counter.Incr(ctx, key, win)
	if err != nil {
		l.warn(err)
		n, _ = l.local.Incr(ctx, key, win)
	}
	return n
}

func (l *Limiter) firstTime(ctx context.Context, key, member string) bool {
	ok, err := l.counter.FirstTime(ctx, key, member, knownRecipients)
	if err != nil {
		l.warn(err)
		ok, _ = l.local.FirstTime(ctx, key, member, knownRecipients)
	}
	return ok
}

// warn logs a counter failure at most once a minute.
func (l *Limiter) warn(err error) {
	now := time.Now().Unix()
	if last := l.lastWarn.Load(); now-last >= 60 && l.lastWarn.CompareAndSwap(last, now) {
		l.log.Warn("ratelimit: shared counters failed; counting locally", "err", err)
	}
}

// Count counts event ev of the session's client (and of its authenticated user; rcpt is
// the recipient of a Rcpt event), stores the counts in c.Rate and returns Postfix's reply
// when the event is over a limit, "" otherwise. Exempt clients are not counted.
func (l *Limiter) Count(ctx context.Context, ev string, c *policy.Conn, rcpt string) string {
	if l.Exempt(c) {
		return ""
	}
	unit := l.cfg.RateTimeUnit
	ip := c.IP.Unmap().String()
	client := func(limit int, count *int) bool {
		if limit <= 0 || !c.IP.IsValid() {
			return false
		}
		n := l.incr(ctx, ev+":"+connlimit.Key(c.IP, l.cfg.IPv6Prefix).String(), unit)
		*count = int(n)
		return n > int64(limit)
	}
	switch ev {
	case Connect:
		if client(l.cfg.ClientConnectionRateLimit, &c.Rate.Connections) {
			return fmt.Sprintf("421 4.7.0 %s Error: too many connections from %s", l.host, ip)
		}
	case NewTLS:
		if client(l.cfg.ClientNewTLSSessionRateLimit, &c.Rate.TLSSessions) {
			return fmt.Sprintf("421 4.7.0 %s Error: too many new TLS sessions from %s", l.host, ip)
		}
	case Auth:
		if client(l.cfg.ClientAuthRateLimit, &c.Rate.Auth) {
			return "450 4.7.1 Error: too many AUTH commands from " + ip
		}
	case Mail:
		if client(l.cfg.ClientMessageRateLimit, &c.Rate.Messages) {
			return "450 4.7.1 Error: too much mail from " + ip
		}
		if u := c.AuthUser; u != "" && l.userMsgs > 0 {
			n := l.incr(ctx, "user-mail:"+u, 24*time.Hour)
			c.Rate.UserMessages = int(n)
			if n > int64(l.userMsgs) {
				return fmt.Sprintf("450 4.7.1 Error: user %s sent more than %d messages today, try again later", u, l.userMsgs)
			}
		}
	case Rcpt:
		if client(l.cfg.ClientRecipientRateLimit, &c.Rate.Recipients) {
			return "450 4.7.1 Error: too many recipients from " + ip
		}
		if u := c.AuthUser; u != "" && l.userRcpts > 0 && rcpt != "" {
			known, member := "user-known:"+u, strings.ToLower(rcpt)
			if l.firstTime(ctx, known, member) {
				n := l.incr(ctx, "user-new-rcpt:"+u, 24*time.Hour)
				c.Rate.UserRecipients = int(n)
				if n > int64(l.userRcpts) {
					if err := l.counter.Forget(ctx, known, member); err != nil {
						_ = l.local.Forget(ctx, known, member)
					}
					return fmt.Sprintf("450 4.7.1 Error: user %s sent to more than %d new recipients today, try again later", u, l.userRcpts)
				}
			}
		}
	}
	return ""
}
