// Package lmtp delivers messages to a mail store over LMTP (RFC 2033): Dovecot, Cyrus,
// or portcullis's own LMTP listener. Unlike SMTP, LMTP answers once per recipient after
// the data, so one transaction can deliver to one mailbox and fail another; Deliver
// returns that per-recipient outcome. Destinations are TCP ("HOST:PORT") or unix sockets
// ("unix:/PATH"); sessions are kept open and reused between messages, checked before
// reuse, and every network operation has a deadline.
//
// The client is go-smtp's LMTP client (smtp.NewClientLMTP, CloseWithLMTPResponse).
package lmtp

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/internal/smtpconn"
)

// RcptResult is the outcome for one recipient: Status (Delivered, Temporary or
// Permanent), the server's Reply with its code and enhanced status code, and the Err.
type RcptResult = smtpconn.Result

// Status is the outcome class of a recipient.
type Status = smtpconn.Status

// The outcomes: a Temporary recipient is retried later, a Permanent one is bounced.
const (
	Delivered = smtpconn.Delivered
	Temporary = smtpconn.Temporary
	Permanent = smtpconn.Permanent
)

// Config configures a Client. Zero values take the defaults in brackets.
type Config struct {
	// LocalName is the name sent in LHLO. [localhost]
	LocalName string `yaml:"local_name"`
	// ConnectTimeout bounds connecting. [10s]
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// CommandTimeout bounds each command's reply. [2m]
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// DataTimeout bounds sending the message and the replies after it. [10m]
	DataTimeout time.Duration `yaml:"data_timeout"`
	// DisableReuse opens a new session for every message.
	DisableReuse bool `yaml:"disable_reuse"`
	// MaxIdle is how many idle sessions are kept per destination (at least the queue's
	// per-destination concurrency, or sessions are closed and reopened). [10]
	MaxIdle int `yaml:"max_idle"`
	// IdleTimeout closes a session idle for this long. [30s]
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxUses closes a session after this many transactions. [100]
	MaxUses int `yaml:"max_uses"`
}

// Client delivers over LMTP. It is safe for concurrent use; each Deliver uses its own
// session.
type Client struct {
	cfg  Config
	pool *smtpconn.Pool
}

// New returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	// LMTP's own defaults; the local name and the data timeout are the session's
	// (smtpconn.Options).
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 2 * time.Minute
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 10
	}
	if strings.ContainsAny(cfg.LocalName, " \r\n") {
		return nil, fmt.Errorf("lmtp: local name %q contains white space", cfg.LocalName)
	}
	return &Client{cfg: cfg, pool: smtpconn.NewPool(smtpconn.PoolConfig{
		Disabled: cfg.DisableReuse, MaxIdle: cfg.MaxIdle, IdleTimeout: cfg.IdleTimeout, MaxUses: cfg.MaxUses,
	})}, nil
}

// ParseDest splits a destination into a network and an address: "unix:/run/lmtp" is a
// unix socket, "HOST:PORT" or "[HOST]:PORT" TCP; a leading "lmtp:" is allowed, as in a
// transport map.
func ParseDest(dest string) (network, addr string, err error) {
	d := strings.TrimPrefix(dest, "lmtp:")
	if p, ok := strings.CutPrefix(d, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return "", "", fmt.Errorf("lmtp: destination %q: socket path must be absolute", dest)
		}
		return "unix", p, nil
	}
	d = strings.TrimPrefix(d, "inet:")
	host, port, err := net.SplitHostPort(d)
	if err != nil || host == "" || port == "" {
		return "", "", fmt.Errorf("lmtp: destination %q: want HOST:PORT or unix:/PATH", dest)
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// Deliver sends the message (size bytes read from msg, CRLF line endings) from the
// reverse-path from ("" for the null sender) to rcpts at dest, and returns one result per
// recipient in the order of rcpts. The error is non-nil when the whole transaction
// failed (a bad destination, no connection, a broken session); the results then carry
// the same failure for every recipient, so a caller can always use the results alone.
func (c *Client) Deliver(ctx context.Context, dest, from string, rcpts []string, msg io.ReaderAt, size int64) ([]RcptResult, error) {
	network, addr, err := ParseDest(dest)
	if err != nil {
		return smtpconn.ForAll(rcpts, smtpconn.Fail("", "", 451, "4.3.5", err.Error(), err)), err
	}
	if len(rcpts) == 0 {
		return nil, nil
	}
	var res []RcptResult
	var broken bool
	err = c.session(ctx, dest, network, addr, func(s *smtpconn.Session) bool {
		res = s.Send(ctx, from, rcpts, io.NewSectionReader(msg, 0, size), size, false)
		broken = s.Broken()
		return s.Retryable()
	})
	if err != nil {
		return smtpconn.ForAll(rcpts, smtpconn.OpenResult(dest, err)), fmt.Errorf("lmtp: %s: %w", dest, err)
	}
	if broken && !anyDelivered(res) {
		return res, fmt.Errorf("lmtp: %s: %s", dest, breakReason(res))
	}
	return res, nil
}

// breakReason is the reply that says why a broken transaction failed: the first one the
// client made up for a lost connection (no server code), not the first recipient's,
// which can be the server's own 550 to that recipient alone.
func breakReason(res []RcptResult) string {
	for _, r := range res {
		if r.Status == Temporary && r.Code == 0 {
			return r.Reply
		}
	}
	for _, r := range res {
		if r.Status == Temporary {
			return r.Reply
		}
	}
	return res[0].Reply
}

// session runs op on a pooled session to dest (network, addr), or on a new one. When op
// reports that a pooled session turned out dead before anything was sent (the server
// dropped it while idle), op runs once more on a new session: nothing can have been
// delivered or asked yet.
func (c *Client) session(ctx context.Context, dest, network, addr string, op func(*smtpconn.Session) (dead bool)) error {
	for attempt := 0; ; attempt++ {
		s := c.pool.Get(dest)
		reused := s != nil
		if s == nil {
			var err error
			if s, err = smtpconn.Open(ctx, network, addr, dest, c.options()); err != nil {
				return err
			}
			s.Key = dest
		}
		if op(s) && reused && attempt == 0 && ctx.Err() == nil {
			s.Close()
			continue
		}
		c.pool.Put(s)
		return nil
	}
}

func (c *Client) options() smtpconn.Options {
	return smtpconn.Options{
		LMTP: true, LocalName: c.cfg.LocalName,
		ConnectTimeout: c.cfg.ConnectTimeout, CommandTimeout: c.cfg.CommandTimeout, DataTimeout: c.cfg.DataTimeout,
	}
}

// Verify asks the LMTP server at dest whether rcpt exists, with MAIL FROM:<> and RCPT
// TO on a pooled session (then RSET; nothing is delivered): true for a 2xx reply, false
// for 5xx (Dovecot: "550 5.1.1 User doesn't exist"), an error for 4xx or no answer. It
// fits route.Config.LocalUserExists, for recipient validation at RCPT time in front of a
// store without a user database of our own:
//
//	LocalUserExists: func(ctx context.Context, a string) (bool, error) { return c.Verify(ctx, dest, a) }
func (c *Client) Verify(ctx context.Context, dest, rcpt string) (bool, error) {
	network, addr, err := ParseDest(dest)
	if err != nil {
		return false, err
	}
	var r smtpconn.Result
	err = c.session(ctx, dest, network, addr, func(s *smtpconn.Session) bool {
		r = s.Probe(ctx, rcpt)
		return s.Broken() && r.Code == 0
	})
	if err != nil {
		return false, fmt.Errorf("lmtp: verify <%s> at %s: %w", rcpt, dest, err)
	}
	switch r.Status {
	case Delivered:
		return true, nil
	case Permanent:
		return false, nil
	}
	return false, fmt.Errorf("lmtp: verify <%s> at %s: %s", rcpt, dest, r.Reply)
}

// Close closes the idle sessions. Deliveries in progress finish; their sessions are
// closed when they end.
func (c *Client) Close() error {
	c.pool.Close()
	return nil
}

func anyDelivered(res []RcptResult) bool {
	for _, r := range res {
		if r.Status == Delivered {
			return true
		}
	}
	return false
}
