package smtpd

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/internal/netlist"
)

// Listener modes.
const (
	ModeMX          = "mx"          // port 25: no AUTH, relay only for trusted networks
	ModeSubmission  = "submission"  // port 587: STARTTLS, AUTH required before MAIL
	ModeSubmissions = "submissions" // port 465: implicit TLS, AUTH required before MAIL
	// ModeLMTP is final delivery over LMTP (RFC 2033, see lmtp.go) from trusted
	// front-ends: TCP from trusted_networks or a unix socket, no AUTH, no relay control.
	ModeLMTP = "lmtp"
)

// Config configures the SMTP server. The zero value of every limit means "use the
// default" (see the field comments); Defaults returns them filled in.
type Config struct {
	// Hostname is our own name: the greeting, the Received header, the self-signed
	// certificate. Default "localhost". Not a key of the smtp: section: the server config
	// sets it from its top-level hostname.
	Hostname string `yaml:"-"`
	// DataDir is where the self-signed certificate is stored (DataDir/tls). Set from the
	// server config's top-level data_dir.
	DataDir string `yaml:"-"`
	// Listeners to serve; at least one.
	Listeners []ListenerConfig `yaml:"listeners"`
	// TLS names a certificate and key; when empty a self-signed certificate is generated
	// on first start in DataDir/tls.
	TLS TLSFiles `yaml:"tls"`

	// LocalDomains are the domains we accept mail for from anyone. Set from the server
	// config's top-level local_domains.
	LocalDomains []string `yaml:"-"`
	// TrustedNetworks (CIDRs or single addresses) may relay without authenticating. Set
	// from the server config's top-level trusted_networks.
	TrustedNetworks []string `yaml:"-"`
	// DelayReject (Postfix's smtpd_delay_reject, default true) answers connect, helo and
	// mail stage rejections at the first RCPT so that the log carries the recipient.
	DelayReject *bool `yaml:"delay_reject"`

	// Milters are chained milters (rspamd's proxy worker in milter mode, OpenDKIM)
	// asked after the rules at each stage, in order; their refusals are answered, their
	// header changes and body replacement applied before the message is queued. Not on
	// lmtp listeners.
	Milters []MilterConfig `yaml:"milters"`
	// MaxMessageSize is the SIZE limit (default 32MiB); larger messages get 552 5.3.4.
	MaxMessageSize bytesize.Size `yaml:"max_message_size"`
	// MaxRecipients per message (default 100, RFC 5321 §4.5.3.1.8); more get 452 4.5.3.
	MaxRecipients int `yaml:"max_recipients"`
	// MaxDataMemory bounds the memory that messages hold from the first byte of DATA
	// until the queue has them, all messages together (default 512MiB, at least about 3.3
	// times max_message_size). While a message arrives at most 256KiB of it is in memory,
	// the rest in a temporary file in the queue's file system; its data stage, which
	// holds it whole plus what the policies and the DKIM signer make of it (about 3.3
	// times its size), waits for room in arrival order, and gets 452 4.3.1 when
	// policy_timeout passes first.
	MaxDataMemory bytesize.Size `yaml:"max_data_memory"`
	// QueueMinFree is the free space the queue's file system must keep (Postfix's
	// queue_minfree): MAIL gets 452 4.3.1 while less is free, or less than 1.5 times the
	// SIZE= the client announced, before it sends the message (default 1.5 times
	// max_message_size).
	QueueMinFree bytesize.Size `yaml:"queue_min_free"`
	// MaxLineSize bounds a command or message line, CRLF included (default 4096).
	MaxLineSize bytesize.Size `yaml:"max_line_size"`
	// MaxHeaderSize bounds the message's header block, up to the empty line that ends
	// it (default 100KiB, Postfix's header_size_limit); a larger header gets 552 5.3.4
	// at the end of DATA, before any policy runs.
	MaxHeaderSize bytesize.Size `yaml:"max_header_size"`
	// MaxCommands per session: EHLO, AUTH, MAIL, RCPT, DATA and RSET (default 100000:
	// a bulk sender reuses one session for thousands of messages, four commands each, and
	// 10000 cut such a session after 2500 messages; abuse is bounded by MaxErrors and the
	// timeouts. NOOP and VRFY, which go-smtp answers itself, are bounded by SessionTimeout).
	MaxCommands int `yaml:"max_commands"`
	// MaxErrors is the number of rejected commands (bad recipients, failed AUTH, policy
	// rejections) after which the session is closed with 421 (default 20).
	MaxErrors int `yaml:"max_errors"`
	// MaxConnections bounds the connections of all SMTP listeners together (default: the
	// sum of the listeners' own max_connections, so that only each listener's pool
	// limits it). Over it a client gets 421 4.7.0 and is disconnected. Set it below that
	// sum only to cap the process: then a flood on one listener can take the others'
	// connections again.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP is the default of each mx, submission and submissions
	// listener's max_connections_per_ip (default 20).
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// IPv6Prefix is how max_connections_per_ip counts IPv6 clients: one count per prefix
	// (default 64). Not a key of the smtp: section: the server config sets it from
	// rate_limits.ipv6_prefix, so that every per-client limit sees one client alike.
	IPv6Prefix int `yaml:"-"`

	// CommandTimeout bounds the wait for each command line, counted from our previous
	// reply: the whole line must have arrived by then, however it is dripped (default 5m,
	// RFC 5321 §4.5.3.2.7). During DATA it bounds each read. A timeout ends the session.
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// HeloTimeout bounds the time from the greeting to a complete HELO, EHLO or LHLO,
	// and the TLS handshake of an implicit-TLS listener (default 30s). Real clients send
	// EHLO at once; a connection that says nothing is cut here instead of holding its slot
	// for command_timeout.
	HeloTimeout time.Duration `yaml:"helo_timeout"`
	// DataTimeout bounds the whole DATA transfer (default 10m).
	DataTimeout time.Duration `yaml:"data_timeout"`
	// SessionTimeout bounds a whole connection (default 1h).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// PolicyTimeout bounds the engine's evaluation of one stage (default 60s).
	PolicyTimeout time.Duration `yaml:"policy_timeout"`
	// QueueTimeout bounds Enqueue (default 60s).
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// ShutdownTimeout is how long Serve waits for sessions in progress when its context
	// ends (default 30s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// ListenerConfig is one listening socket.
type ListenerConfig struct {
	Name string `yaml:"name"` // in logs, metrics and policy.Conn.Listener; default the mode
	Addr string `yaml:"addr"` // host:port, or unix:/path for an lmtp listener
	Mode string `yaml:"mode"` // mx, submission, submissions or lmtp
	// RequireAuth requires AUTH before MAIL. Default true for submission(s), and
	// impossible for mx and lmtp (AUTH is never offered there).
	RequireAuth *bool `yaml:"require_auth"`
	// ProxyProtocol expects a PROXY protocol v1 or v2 header (HAProxy) on every
	// connection; the client address is taken from it.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// ProxyFrom restricts who may send PROXY headers (CIDRs); others are dropped.
	// Empty means any peer (only sensible when the port is firewalled).
	ProxyFrom []string `yaml:"proxy_from"`
	// XClientFrom lists the networks (CIDRs or addresses) that may send Postfix's
	// XCLIENT command to hand over the real client's address, names, HELO and login
	// (Postfix's smtpd_authorized_xclient_hosts): a proxy or front-end in front of this
	// listener. Empty (the default) allows nobody; XCLIENT is then refused with 550.
	// Understood on the plaintext leg, outside a mail transaction; not on lmtp listeners.
	// After XCLIENT the session is the client it named, which may send XCLIENT again
	// only when it is in these networks too (as in Postfix).
	// The connection pools count the proxy's own address (raise max_connections_per_ip
	// for it); rules, limits and the decision log see the client it names.
	XClientFrom []string `yaml:"xclient_from"`
	// MaxConnections bounds this listener's open connections (default 300 on mx
	// listeners and 100 on the others). Each listener has its own pool: a flood of connections on the
	// MX port cannot take submission's or LMTP's. Over it a client gets 421 4.7.0.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds the connections to this listener from one client address,
	// or one IPv6 /64 (default: smtp.max_connections_per_ip; for lmtp the listener's
	// max_connections, since one front-end delivers everything).
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
}

// Default listener pools (ListenerConfig.MaxConnections).
const (
	defaultMXConnections    = 300
	defaultOtherConnections = 100
)

// TLSFiles names a PEM certificate chain and key.
type TLSFiles struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of the certificate.
	KeyFile string `yaml:"key_file"`
}

// Defaults returns cfg with every unset limit filled in.
func (cfg Config) Defaults() Config {
	set := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 32 << 20
	}
	if cfg.MaxDataMemory <= 0 {
		cfg.MaxDataMemory = 512 << 20
	}
	cfg.MaxDataMemory = max(cfg.MaxDataMemory, bytesize.Size(dataCost(int64(cfg.MaxMessageSize), true)))
	if cfg.QueueMinFree <= 0 {
		cfg.QueueMinFree = cfg.MaxMessageSize / 2 * 3
	}
	set(&cfg.MaxRecipients, 100)
	if cfg.MaxLineSize <= 0 {
		cfg.MaxLineSize = 4096
	}
	if cfg.MaxHeaderSize <= 0 {
		cfg.MaxHeaderSize = 100 << 10
	}
	set(&cfg.MaxCommands, 100000)
	set(&cfg.MaxErrors, 20)
	set(&cfg.MaxConnectionsPerIP, 20)
	set(&cfg.IPv6Prefix, 64)
	setD(&cfg.CommandTimeout, 5*time.Minute)
	setD(&cfg.HeloTimeout, 30*time.Second)
	setD(&cfg.DataTimeout, 10*time.Minute)
	setD(&cfg.SessionTimeout, time.Hour)
	setD(&cfg.PolicyTimeout, time.Minute)
	setD(&cfg.QueueTimeout, time.Minute)
	setD(&cfg.ShutdownTimeout, 30*time.Second)
	if cfg.DelayReject == nil {
		t := true
		cfg.DelayReject = &t
	}
	ls := make([]ListenerConfig, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		if l.Mode == "" {
			l.Mode = ModeMX
		}
		if l.Name == "" {
			l.Name = l.Mode
		}
		if l.RequireAuth == nil {
			v := l.Mode != ModeMX && l.Mode != ModeLMTP
			l.RequireAuth = &v
		}
		if l.MaxConnections <= 0 {
			l.MaxConnections = defaultOtherConnections
			if l.Mode == ModeMX {
				l.MaxConnections = defaultMXConnections
			}
		}
		if l.MaxConnectionsPerIP <= 0 {
			l.MaxConnectionsPerIP = cfg.MaxConnectionsPerIP
			if l.Mode == ModeLMTP {
				l.MaxConnectionsPerIP = l.MaxConnections
			}
		}
		ls[i] = l
	}
	cfg.Listeners = ls
	if cfg.MaxConnections <= 0 {
		for _, l := range ls {
			cfg.MaxConnections += l.MaxConnections
		}
	}
	return cfg
}

// validate checks a Config that went through Defaults.
func (cfg Config) validate() (trusted []netip.Prefix, err error) {
	if len(cfg.Listeners) == 0 {
		return nil, fmt.Errorf("smtpd: no listeners configured")
	}
	names := map[string]bool{}
	for i, l := range cfg.Listeners {
		switch l.Mode {
		case ModeMX, ModeSubmission, ModeSubmissions, ModeLMTP:
		default:
			return nil, fmt.Errorf("smtpd: listener %d (%q): mode %q: want mx, submission, submissions or lmtp", i, l.Name, l.Mode)
		}
		if (l.Mode == ModeMX || l.Mode == ModeLMTP) && *l.RequireAuth {
			return nil, fmt.Errorf("smtpd: listener %q: require_auth is not possible in %s mode (AUTH is not offered)", l.Name, l.Mode)
		}
		if err := validateLMTPListener(l); err != nil {
			return nil, err
		}
		if l.Addr == "" {
			return nil, fmt.Errorf("smtpd: listener %q: addr is empty", l.Name)
		}
		if names[l.Name] {
			return nil, fmt.Errorf("smtpd: listener name %q used twice", l.Name)
		}
		names[l.Name] = true
		if len(l.ProxyFrom) > 0 && !l.ProxyProtocol {
			return nil, fmt.Errorf("smtpd: listener %q: proxy_from without proxy_protocol: true", l.Name)
		}
		if _, err := netlist.Prefixes(l.ProxyFrom); err != nil {
			return nil, fmt.Errorf("smtpd: listener %q: proxy_from: %w", l.Name, err)
		}
		if len(l.XClientFrom) > 0 && l.Mode == ModeLMTP {
			return nil, fmt.Errorf("smtpd: listener %q: xclient_from is not possible in lmtp mode", l.Name)
		}
		if _, err := netlist.Prefixes(l.XClientFrom); err != nil {
			return nil, fmt.Errorf("smtpd: listener %q: xclient_from: %w", l.Name, err)
		}
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		return nil, fmt.Errorf("smtpd: tls: cert_file and key_file go together")
	}
	for _, d := range cfg.LocalDomains {
		if !validDomain(strings.ToLower(strings.TrimSuffix(d, "."))) {
			return nil, fmt.Errorf("smtpd: local_domains: %q is not a domain name", d)
		}
	}
	trusted, err = netlist.Prefixes(cfg.TrustedNetworks)
	if err != nil {
		return nil, fmt.Errorf("smtpd: trusted_networks: %w", err)
	}
	return trusted, nil
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
