// Package relay sends mail out by SMTP: to the mail exchangers of the recipients' domain
// (RFC 5321 §5.1: MX records in preference order, equal preferences in random order,
// the implicit MX when a domain has none, the null MX of RFC 7505 as a permanent
// failure) or to a configured next hop such as a smarthost with AUTH. It negotiates
// STARTTLS opportunistically by default (RFC 3207, like Postfix's "may" level), falls
// back to the next host when one cannot be reached or greets with an error, reuses
// sessions, limits concurrent sessions per destination, and reports a result per
// recipient: 2xx delivered, 4xx deferred, 5xx failed.
package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/idna"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/delivery/internal/smtpconn"
	"github.com/portcullis-mail/portcullis/dnsx"
)

// RcptResult is the outcome for one recipient (see lmtp.RcptResult: the same type).
type RcptResult = smtpconn.Result

// Status is the outcome class of a recipient.
type Status = smtpconn.Status

// The outcomes: a Temporary recipient is retried later, a Permanent one is bounced.
const (
	Delivered = smtpconn.Delivered
	Temporary = smtpconn.Temporary
	Permanent = smtpconn.Permanent
)

// TLS levels, as Postfix's smtp_tls_security_level.
const (
	TLSNone    = "none"    // never STARTTLS
	TLSMay     = "may"     // STARTTLS when offered, certificate not verified; plaintext otherwise
	TLSEncrypt = "encrypt" // STARTTLS required, certificate not verified
	TLSVerify  = "verify"  // STARTTLS required, certificate verified against the host name
)

// Config configures a Client. Zero values take the defaults in brackets.
type Config struct {
	// Hostname is the name sent in EHLO. [localhost]
	Hostname string `yaml:"hostname"`
	// Port is the port of mail exchangers and of next hops given without one. [25]
	// Tests point it at a loopback server.
	Port int `yaml:"port"`
	// TLS is the STARTTLS level for mail exchangers: none, may, encrypt, verify. [may]
	TLS string `yaml:"tls"`
	// Hosts holds settings per next hop, keyed as the next hop is written in the
	// transport map or relay host ("[smtp.example.net]:587", "example.org").
	Hosts map[string]HostConfig `yaml:"hosts"`
	// PerDestination limits simultaneous sessions to one next hop. [10]
	PerDestination int `yaml:"per_destination"`
	// MaxMXHosts is how many mail exchangers are tried per attempt. [5]
	MaxMXHosts int `yaml:"max_mx_hosts"`
	// ConnectTimeout, CommandTimeout and DataTimeout bound connecting, each command and
	// sending the message with its final reply. [30s, 5m, 10m; RFC 5321 §4.5.3.2]
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	CommandTimeout time.Duration `yaml:"command_timeout"`
	DataTimeout    time.Duration `yaml:"data_timeout"`
	// DisableReuse opens a new session for every message.
	DisableReuse bool `yaml:"disable_reuse"`
	// MaxIdle, IdleTimeout and MaxUses bound session reuse per next hop. [10, 10s, 100]
	MaxIdle     int           `yaml:"max_idle"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	MaxUses     int           `yaml:"max_uses"`
	// MaxSignSize is the largest message given to Sign. [32 MiB] Set in Go with Sign;
	// not a config key (the server signs at receipt, see dkim.sign).
	MaxSignSize int64 `yaml:"-"`

	// Resolver looks up MX and address records. Required unless every next hop is an
	// address literal.
	Resolver dnsx.Resolver `yaml:"-"`
	// Sign, when set, DKIM-signs each message before it is sent (for example
	// (*dkim.Signer).SignMessage). An error sends the message unsigned and is logged:
	// a missing key must not stop the mail.
	Sign func(msg []byte) ([]byte, error) `yaml:"-"`
	// RootCAs verifies certificates at level verify; nil uses the system roots.
	RootCAs *x509.CertPool `yaml:"-"`
	// Logger gets a record per session failure and signing error. [slog.Default()]
	Logger *slog.Logger `yaml:"-"`
}

// HostConfig is the configuration of one next hop.
type HostConfig struct {
	// TLS overrides Config.TLS for this next hop. With a User, at least encrypt.
	TLS string `yaml:"tls"`
	// User and Password log in with AUTH PLAIN after STARTTLS (a smarthost).
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Client relays mail. It is safe for concurrent use.
type Client struct {
	cfg  Config
	pool *smtpconn.Pool
	log  *slog.Logger

	mu    sync.Mutex
	slots map[string]chan struct{}
}

// New returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if strings.ContainsAny(cfg.Hostname, " \r\n\t") {
		return nil, fmt.Errorf("relay: hostname %q contains white space", cfg.Hostname)
	}
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("relay: port %d out of range", cfg.Port)
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSMay
	}
	if !validLevel(cfg.TLS) {
		return nil, fmt.Errorf("relay: tls level %q: want none, may, encrypt or verify", cfg.TLS)
	}
	for hop, h := range cfg.Hosts {
		if h.TLS != "" && !validLevel(h.TLS) {
			return nil, fmt.Errorf("relay: hosts[%q]: tls level %q: want none, may, encrypt or verify", hop, h.TLS)
		}
		if h.User != "" && (h.TLS == TLSNone || h.TLS == TLSMay) {
			return nil, fmt.Errorf("relay: hosts[%q]: AUTH needs tls encrypt or verify, not %q", hop, h.TLS)
		}
		if _, _, _, err := ParseNextHop(hop); err != nil {
			return nil, fmt.Errorf("relay: hosts: %w", err)
		}
	}
	if cfg.PerDestination <= 0 {
		cfg.PerDestination = 10
	}
	if cfg.MaxMXHosts <= 0 {
		cfg.MaxMXHosts = 5
	}
	// The timeouts are the session's defaults (smtpconn.Options).
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 10
	}
	if cfg.MaxSignSize <= 0 {
		cfg.MaxSignSize = 32 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{
		cfg: cfg, log: cfg.Logger, slots: map[string]chan struct{}{},
		pool: smtpconn.NewPool(smtpconn.PoolConfig{Disabled: cfg.DisableReuse, MaxIdle: cfg.MaxIdle, IdleTimeout: cfg.IdleTimeout, MaxUses: cfg.MaxUses}),
	}, nil
}

func validLevel(l string) bool {
	return l == TLSNone || l == TLSMay || l == TLSEncrypt || l == TLSVerify
}

// ParseNextHop reads a next hop as Postfix writes it in a transport map: "example.org"
// (its mail exchangers), "example.org:2525" (its mail exchangers on port 2525),
// "[mail.example.org]" or "[192.0.2.1]:587" (that host, no MX lookup). A leading "smtp:"
// is allowed. port is 0 when not given.
func ParseNextHop(hop string) (host string, port int, mx bool, err error) {
	h := strings.TrimPrefix(hop, "smtp:")
	bad := func(why string) (string, int, bool, error) {
		return "", 0, false, fmt.Errorf("next hop %q: %s", hop, why)
	}
	mx = true
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return bad("unbalanced [")
		}
		host, h, mx = h[1:end], h[end+1:], false
		if h != "" {
			if !strings.HasPrefix(h, ":") {
				return bad("junk after ]")
			}
			h = h[1:]
			if p, err := strconv.Atoi(h); err != nil || p <= 0 || p > 65535 {
				return bad("bad port")
			} else {
				port = p
			}
		}
	} else {
		host = h
		if i := strings.LastIndexByte(h, ':'); i >= 0 {
			p, err := strconv.Atoi(h[i+1:])
			if err != nil || p <= 0 || p > 65535 {
				return bad("bad port")
			}
			host, port = h[:i], p
		}
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" || len(host) > 253 || strings.ContainsAny(host, " \t\r\n/[]@") {
		return bad("bad host")
	}
	if strings.HasPrefix(host, "ipv6:") && !mx {
		host = host[5:]
	}
	return host, port, mx, nil
}

// maxAddresses bounds the addresses tried in one attempt, over all MX hosts.
const maxAddresses = 10

// target is one address to try.
type target struct {
	host string // the MX host name, for TLS and replies
	addr string // IP:port
}

// Deliver sends the message (size bytes read from msg, CRLF line endings) from the
// reverse-path from ("" for the null sender) to rcpts through nexthop (see
// ParseNextHop; "" means the mail exchangers of the recipients' domain, which must then
// be the same for all) and returns one result per recipient, in order. The error is
// non-nil when the transaction failed as a whole (no host reachable, DNS failure, null
// MX); the results then carry that failure for every recipient.
func (c *Client) Deliver(ctx context.Context, nexthop, from string, rcpts []string, msg io.ReaderAt, size int64) ([]RcptResult, error) {
	return c.DeliverDSN(ctx, nexthop, from, rcpts, msg, size, nil)
}

// DSN holds the RFC 3461 parameters passed on to a next hop that supports DSN: RET,
// ENVID and NOTIFY per recipient (spool.Envelope's Ret, EnvID and Notify).
type DSN = smtpconn.DSN

// DeliverDSN is Deliver passing on DSN parameters (RFC 3461 §4: a relaying MTA keeps
// them, so NOTIFY=NEVER still holds at the next hop). dsn may be nil.
func (c *Client) DeliverDSN(ctx context.Context, nexthop, from string, rcpts []string, msg io.ReaderAt, size int64, dsn *DSN) ([]RcptResult, error) {
	if len(rcpts) == 0 {
		return nil, nil
	}
	if nexthop == "" {
		nexthop = address.Domain(rcpts[0])
		for _, r := range rcpts[1:] {
			if address.Domain(r) != nexthop {
				err := fmt.Errorf("relay: recipients of different domains (%s, %s) without a next hop", nexthop, address.Domain(r))
				return smtpconn.ForAll(rcpts, smtpconn.Fail("", "", 451, "4.3.5", err.Error(), err)), err
			}
		}
	}
	host, port, useMX, err := ParseNextHop(nexthop)
	if err != nil {
		return smtpconn.ForAll(rcpts, smtpconn.Fail("", "", 554, "5.3.5", err.Error(), err)), fmt.Errorf("relay: %w", err)
	}
	if port == 0 {
		port = c.cfg.Port
	}
	hc := c.cfg.Hosts[nexthop]
	if hc.TLS == "" && hc.User == "" {
		hc = c.cfg.Hosts[strings.TrimPrefix(nexthop, "smtp:")]
	}

	// Sign once per message, not per host tried.
	if c.cfg.Sign != nil && size <= c.cfg.MaxSignSize {
		raw := make([]byte, size)
		if _, err := msg.ReadAt(raw, 0); err != nil && !(errors.Is(err, io.EOF) && len(raw) == int(size)) {
			err = fmt.Errorf("relay: reading the message: %w", err)
			return smtpconn.ForAll(rcpts, smtpconn.FromError("", "", err, "4.3.0")), err
		}
		if signed, err := c.cfg.Sign(raw); err != nil {
			c.log.Warn("relay: DKIM signing failed; sending unsigned", "nexthop", nexthop, "err", err)
		} else {
			msg, size = bytes.NewReader(signed), int64(len(signed))
		}
	}

	utf8 := headerHasUTF8(msg, size)

	if err := c.acquire(ctx, nexthop); err != nil {
		return smtpconn.ForAll(rcpts, smtpconn.FromError("", "", err, "4.4.7")), fmt.Errorf("relay: waiting for a session to %s: %w", nexthop, err)
	}
	defer c.release(nexthop)

	// Recipients still to try, and the results so far. A recipient deferred before the
	// message went out to it (4xx to MAIL or RCPT, a session lost before DATA) is tried
	// on the next host at once, as Postfix does; any other result is final for this
	// attempt.
	out := make([]RcptResult, len(rcpts))
	pending := make([]int, len(rcpts))
	for i := range pending {
		pending[i] = i
	}
	tried := make([]bool, len(rcpts))
	send := func(s *smtpconn.Session, lastHost bool) {
		sub := make([]string, len(pending))
		for j, i := range pending {
			sub[j] = rcpts[i]
		}
		res := s.SendDSN(ctx, from, sub, io.NewSectionReader(msg, 0, size), size, utf8, dsn)
		var still []int
		for j, i := range pending {
			out[i], tried[i] = res[j], true
			if res[j].Status == Temporary && res[j].BeforeData && !lastHost && ctx.Err() == nil {
				still = append(still, i)
			}
		}
		pending = still
	}

	// A pooled session first; retry once on a fresh one if it turns out dead before
	// anything was sent.
	if s := c.pool.Get(nexthop); s != nil {
		send(s, false)
		if s.Retryable() {
			s.Close()
		} else {
			c.pool.Put(s)
		}
		if len(pending) == 0 {
			return out, nil
		}
	}

	targets, fail := c.targets(ctx, host, port, useMX)
	if fail != nil {
		for _, i := range pending {
			if !tried[i] || fail.Status == Permanent {
				out[i] = *fail
				out[i].Rcpt = rcpts[i]
			}
		}
		return out, fmt.Errorf("relay: %s: %s", nexthop, fail.Reply)
	}
	opts := c.options(hc)
	var last *smtpconn.Result
	for n, t := range targets {
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		s, err := smtpconn.Open(ctx, "tcp", t.addr, t.host, opts)
		if err != nil {
			r := smtpconn.OpenResult(t.host, err)
			c.log.Info("relay: cannot use host; trying the next", "nexthop", nexthop, "host", t.host, "addr", t.addr, "reply", r.Reply)
			if last == nil || r.Status == Temporary || last.Status != Temporary {
				last = &r
			}
			continue
		}
		s.Key = nexthop
		send(s, n == len(targets)-1)
		c.pool.Put(s)
	}
	if len(pending) == 0 {
		return out, nil
	}
	if last == nil {
		r := smtpconn.Fail("", "", 451, "4.4.4", "no mail exchanger for "+host+" could be tried", nil)
		last = &r
	}
	all := true
	for _, i := range pending {
		if !tried[i] { // never reached a server: the last connection failure
			out[i] = *last
			out[i].Rcpt = rcpts[i]
		} else {
			all = false
		}
	}
	if all && len(pending) == len(rcpts) {
		return out, fmt.Errorf("relay: %s: %s", nexthop, last.Reply)
	}
	return out, nil
}

func (c *Client) options(hc HostConfig) smtpconn.Options {
	level := c.cfg.TLS
	if hc.TLS != "" {
		level = hc.TLS
	}
	if hc.User != "" && (level == TLSNone || level == TLSMay) {
		level = TLSEncrypt
	}
	o := smtpconn.Options{
		LocalName: c.cfg.Hostname, ConnectTimeout: c.cfg.ConnectTimeout,
		CommandTimeout: c.cfg.CommandTimeout, DataTimeout: c.cfg.DataTimeout,
		AuthUser: hc.User, AuthPassword: hc.Password,
	}
	switch level {
	case TLSMay:
		o.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	case TLSEncrypt:
		o.TLS, o.RequireTLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, true
	case TLSVerify:
		o.TLS, o.RequireTLS = &tls.Config{RootCAs: c.cfg.RootCAs, MinVersion: tls.VersionTLS12}, true
	}
	return o
}

// targets returns the addresses to try for a next hop, in order, or the failure that
// applies to every recipient.
func (c *Client) targets(ctx context.Context, host string, port int, useMX bool) ([]target, *smtpconn.Result) {
	fail := func(code int, enh, text string, err error) ([]target, *smtpconn.Result) {
		r := smtpconn.Fail("", "", code, enh, text, err)
		return nil, &r
	}
	ps := strconv.Itoa(port)
	if ip, err := netip.ParseAddr(host); err == nil {
		return []target{{host: host, addr: net.JoinHostPort(ip.String(), ps)}}, nil
	}
	if a, err := idna.Lookup.ToASCII(host); err == nil {
		host = a
	} else {
		return fail(554, "5.1.2", "bad domain name "+host, err)
	}
	if c.cfg.Resolver == nil {
		return fail(451, "4.3.5", "no DNS resolver configured to find "+host, nil)
	}
	hosts := []string{host}
	if useMX {
		mxs, err := dnsx.LookupMX(ctx, c.cfg.Resolver, host)
		switch {
		case dnsx.IsNotFound(err):
			return fail(550, "5.1.2", "domain "+host+" does not exist", err)
		case err != nil:
			return fail(451, "4.4.3", "MX lookup for "+host+" failed: "+err.Error(), err)
		}
		hosts = nil
		for _, m := range mxs {
			if m.Host == "" {
				// RFC 7505 §3: a null MX says the domain accepts no mail.
				return fail(556, "5.1.10", "domain "+host+" accepts no mail (null MX)", nil)
			}
		}
		// RFC 5321 §5.1: when we are one of the MX hosts, only more preferred ones may be
		// tried; when we are the best, the mail would loop back to us.
		for i, m := range mxs {
			if strings.EqualFold(m.Host, strings.TrimSuffix(c.cfg.Hostname, ".")) {
				if i == 0 || mxs[0].Pref == m.Pref {
					return fail(554, "5.4.6", "mail for "+host+" loops back to myself ("+m.Host+" is its best MX)", nil)
				}
				j := i
				for j > 0 && mxs[j-1].Pref == m.Pref {
					j--
				}
				mxs = mxs[:j]
				break
			}
		}
		if len(mxs) == 0 {
			// RFC 5321 §5.1: no MX records, the domain itself is the implicit MX.
			hosts = []string{host}
		} else {
			// Equal preferences in random order (RFC 5321 §5.1), so that load spreads.
			for i := 0; i < len(mxs); {
				j := i
				for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
					j++
				}
				grp := mxs[i:j]
				rand.Shuffle(len(grp), func(a, b int) { grp[a], grp[b] = grp[b], grp[a] })
				for _, m := range grp {
					hosts = append(hosts, m.Host)
				}
				i = j
			}
		}
		if len(hosts) > c.cfg.MaxMXHosts {
			hosts = hosts[:c.cfg.MaxMXHosts]
		}
	}
	var out []target
	var lastErr error
	for _, h := range hosts {
		ips, err := dnsx.LookupIP(ctx, c.cfg.Resolver, h)
		if err != nil {
			lastErr = err
			continue
		}
		for _, ip := range ips {
			// Like Postfix's smtp_mx_address_limit: a hostile zone cannot make one
			// attempt try hundreds of addresses.
			if len(out) >= maxAddresses {
				break
			}
			out = append(out, target{host: h, addr: net.JoinHostPort(ip.Unmap().String(), ps)})
		}
	}
	if len(out) == 0 {
		if lastErr != nil && !dnsx.IsTemporary(lastErr) && !useMX {
			return fail(550, "5.1.2", "host "+host+" has no address: "+lastErr.Error(), lastErr)
		}
		why := "no address for the mail exchangers of " + host
		if lastErr != nil {
			why += ": " + lastErr.Error()
		}
		return fail(451, "4.4.4", why, lastErr)
	}
	return out, nil
}

// acquire waits for a session slot to nexthop.
func (c *Client) acquire(ctx context.Context, nexthop string) error {
	c.mu.Lock()
	ch := c.slots[nexthop]
	if ch == nil {
		ch = make(chan struct{}, c.cfg.PerDestination)
		c.slots[nexthop] = ch
	}
	c.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) release(nexthop string) {
	c.mu.Lock()
	ch := c.slots[nexthop]
	c.mu.Unlock()
	<-ch
}

// Close closes the idle sessions.
func (c *Client) Close() error {
	c.pool.Close()
	return nil
}

// headerHasUTF8 reports whether the message header (its first 64 KiB) has non-ASCII
// bytes: RFC 6532 header fields, sent with SMTPUTF8 when the server offers it.
func headerHasUTF8(msg io.ReaderAt, size int64) bool {
	buf := make([]byte, min(size, 64<<10))
	n, _ := msg.ReadAt(buf, 0)
	buf = buf[:n]
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		buf = buf[:i]
	}
	for _, b := range buf {
		if b >= 0x80 {
			return true
		}
	}
	return false
}
