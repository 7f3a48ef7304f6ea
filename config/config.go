// Package config decodes the admin's files into each package's Config: the server config
// (portcullis.yaml: listeners, domains, data dir, DNS) and the rule file (rules.yaml: the
// policy instances and the rules). It holds the one table from policy kinds ("rbl", "spf",
// "clamd", ...) to their constructors. Decoding is strict: an unknown key is an error that
// names the key, its line and the file.
//
// docs/config.md, the reference of every key, is generated from the config structs and
// their comments: after changing one, run go generate ./config (that is, go run
// ./config/internal/gendoc); a test fails while the file is stale.
package config

//go:generate go run ./internal/gendoc

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policyd"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/local"
	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/imapd"
	"github.com/portcullis-mail/portcullis/managesieve"
	"github.com/portcullis-mail/portcullis/pop3d"
	"github.com/portcullis-mail/portcullis/proxy"
	"github.com/portcullis-mail/portcullis/quarantine"
	"github.com/portcullis-mail/portcullis/ratelimit"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/store"
	"github.com/portcullis-mail/portcullis/web"
)

// Config is the server configuration (portcullis.yaml).
type Config struct {
	// Hostname is our name in greetings, Received headers and certificates.
	Hostname string `yaml:"hostname"`
	// DataDir holds the spool, mailboxes, databases, keys and certificates.
	DataDir string `yaml:"data_dir"`
	// User is the unprivileged user portcullis serve runs as. Started as root, it binds
	// the listeners, reads the TLS certificate and key and gives the data directory to
	// the user, then switches to user and group (with the user's supplementary groups)
	// before serving any client, as Postfix and Dovecot do; the admin commands (user,
	// queue, bayes, dkim) switch too. Empty: the server runs as whoever started it
	// (under systemd as a dedicated user, see docs/operations.md), as root only with
	// every listener on loopback or with allow_root.
	User string `yaml:"user"`
	// Group is the group user runs with. Default: the user's primary group.
	Group string `yaml:"group"`
	// AllowRoot lets portcullis serve run as root, without user, with listeners on
	// addresses other than loopback; without it, it refuses to start. On loopback only
	// (the embedded defaults) it runs as root with a warning.
	AllowRoot bool `yaml:"allow_root"`
	// MemoryLimit is the Go runtime's soft memory limit (runtime/debug.SetMemoryLimit):
	// as the process nears it the garbage collector works harder, so that a burst of
	// large messages or FETCHes is paid in CPU before the kernel's out-of-memory killer
	// stops SMTP, IMAP and the queue together. Default: three quarters of the memory the
	// process may use (the cgroup's memory.max, else the machine's); negative: no limit.
	// GOMEMLIMIT in the environment wins over both.
	MemoryLimit bytesize.Size `yaml:"memory_limit"`
	// LocalDomains are the domains we receive mail for.
	LocalDomains []string `yaml:"local_domains"`
	// TrustedNetworks may relay without authentication (CIDRs). Default: loopback only.
	TrustedNetworks []string `yaml:"trusted_networks"`
	// AuthservID names us in Authentication-Results headers (RFC 8601); incoming ones
	// that claim it are removed. Default: hostname.
	AuthservID string `yaml:"authserv_id"`
	// Postmaster is the first user, created with a random password on first start.
	Postmaster string `yaml:"postmaster"`
	// Admins are the users with a right the others lack: sending with the null sender
	// <> once authenticated (the shipped rule sender-login-mismatch refuses it to
	// everyone else, as it refuses addresses a user does not own). Default: the
	// postmaster; an empty list for nobody.
	Admins []string `yaml:"admins"`
	// Rules is the rule file (policies and rules). Default DATA/rules.yaml, written from
	// the built-in defaults on first start.
	Rules string `yaml:"rules"`
	// Log is the server's log on standard error.
	Log struct {
		// Level is the least severe record written: debug, info, warn or error.
		Level string `yaml:"level"`
		// Format is text (key=value) or json.
		Format string `yaml:"format"`
		// PostfixFile, when set, is a second log with the lines Postfix writes for the
		// same traffic (connect, NOQUEUE reject, client=, message-id=, qmgr from=,
		// to=... status=, removed), for pflogsumm and other Postfix log tools.
		PostfixFile string `yaml:"postfix_file"`
	} `yaml:"log"`
	// HTTP serves the Prometheus metrics on /metrics and the web page on / (with TLS,
	// smtp.tls's certificate, when the address is not loopback).
	HTTP struct {
		// Addr is the listening address (host:port); empty disables the HTTP server.
		Addr string `yaml:"addr"`
		// Pprof serves Go's profiler under /debug/pprof/ (keep the address private).
		Pprof bool `yaml:"pprof"`
		// MetricsFrom are the client networks (CIDRs or addresses) that may read /metrics
		// and /debug/pprof/; others get 403, so a page listening beyond loopback does not
		// publish them. Default: loopback only.
		MetricsFrom []string `yaml:"metrics_from"`
	} `yaml:"http"`
	// DNS is the resolver every DNS policy shares.
	DNS dnsx.ClientConfig `yaml:"dns"`
	// Cache is the DNS cache in front of the resolver.
	Cache dnsx.CacheConfig `yaml:"dns_cache"`
	// SMTP is the SMTP server: listeners, TLS and limits. Its hostname, data dir, local
	// domains and trusted networks are the top-level keys; writing them here is an error.
	SMTP smtpd.Config `yaml:"smtp"`
	// RateLimits are Postfix anvil's rate limits per client address (all off by default)
	// and mox's per-user daily limits, counted in memory or, shared by front-ends, in
	// Redis. Trusted networks are exempt unless event_limit_exceptions says otherwise.
	RateLimits ratelimit.Config `yaml:"rate_limits"`
	// Auth is the users: local ones (argon2id), LDAP (optional, asked after the local
	// users), brute-force throttling, and recipient validation at RCPT.
	Auth auth.Config `yaml:"auth"`
	// Mode is this process's part in an installation of several nodes (docs/scale-out.md):
	// standalone (the default: SMTP, queue, store, IMAP, POP3 and ManageSieve in one
	// process); frontend (SMTP with the whole policy pipeline and a queue on its own
	// disk, no store: each local recipient is checked against the shared directory at
	// RCPT and delivered by LMTP to the back-end holding the mailbox); backend (a
	// standalone node that is one of the directory's mail hosts, named by
	// directory.this_host: front-ends deliver to its LMTP listener); proxy (the IMAP and
	// POP3 proxy of the proxy section only: no SMTP, queue or store). The imap, pop3 and
	// managesieve addresses are ignored in a front-end and a proxy, smtp.listeners in a
	// proxy.
	Mode string `yaml:"mode"`
	// Directory is where the multi-node mode looks users up (mail host, quota,
	// aliases): the local user database (default), a shared PostgreSQL database, or the
	// LDAP directory of auth.ldap.
	Directory directory.Config `yaml:"directory"`
	// Delivery is the queue manager (retries, lifetime, concurrency, DSNs).
	Delivery delivery.Config `yaml:"delivery"`
	// Routing is the router: aliases, virtual aliases, canonical and transport maps, the
	// relay host. Its local domains are the top-level local_domains.
	Routing route.Config `yaml:"routing"`
	// LMTP is the client of the lmtp: transports (routing.transport, local_transport).
	LMTP lmtp.Config `yaml:"lmtp"`
	// Relay is the client of the smtp: transports: mail exchangers and relay hosts.
	Relay relay.Config `yaml:"relay"`
	// Store is the mail store (maildirs and their index) behind IMAP, POP3 and delivery.
	Store store.Config `yaml:"store"`
	// IMAP is the IMAP server over the store, with smtp.tls's certificate. Passwords
	// only over TLS unless trusted: true.
	IMAP struct {
		// Addr is the listening address offering STARTTLS; empty disables it.
		Addr string `yaml:"addr"`
		// TLSAddr is the listening address of implicit TLS (imaps); empty disables it.
		TLSAddr string `yaml:"tls_addr"`
		// ProxyProtocol expects a PROXY protocol header (v1 or v2) naming the real client
		// on connections from ProxyFrom, on both listeners: what portcullis's proxy (or
		// HAProxy) sends to a back-end, so that its logs and limits see the client.
		ProxyProtocol bool `yaml:"proxy_protocol"`
		// ProxyFrom are the proxies (CIDRs) whose connections must carry the header;
		// others are served as direct clients. Required with proxy_protocol.
		ProxyFrom []string `yaml:"proxy_from"`
		// MoveFrom are the other back-ends (CIDRs), which run portcullis user move and
		// log in here with the proxy's master login: their connections must carry the
		// header too (with proxy_protocol), but its client address is only logged and
		// its TLS flag never believed. List back-ends here, not in proxy_from. The
		// ManageSieve listener follows imap's.
		MoveFrom     []string `yaml:"move_from"`
		imapd.Config `yaml:",inline"`
		// TrainJunk trains the Bayesian scorer's database (DATA/bayes/global.db) when
		// users move mail into or out of Junk. Default true.
		TrainJunk *bool `yaml:"train_junk"`
	} `yaml:"imap"`
	// POP3 is the POP3 server over the store, with smtp.tls's certificate. Passwords only
	// over TLS unless trusted: true.
	POP3 struct {
		// Addr is the listening address offering STLS; empty disables it.
		Addr string `yaml:"addr"`
		// TLSAddr is the listening address of implicit TLS (pop3s); empty disables it.
		TLSAddr string `yaml:"tls_addr"`
		// ProxyProtocol expects a PROXY protocol header (v1 or v2) naming the real client
		// on connections from ProxyFrom, on both listeners: what portcullis's proxy (or
		// HAProxy) sends to a back-end, so that its logs and limits see the client.
		ProxyProtocol bool `yaml:"proxy_protocol"`
		// ProxyFrom are the proxies (CIDRs) whose connections must carry the header;
		// others are served as direct clients. Required with proxy_protocol.
		ProxyFrom []string `yaml:"proxy_from"`
		// MoveFrom are the other back-ends (CIDRs), as imap.move_from.
		MoveFrom     []string `yaml:"move_from"`
		pop3d.Config `yaml:",inline"`
	} `yaml:"pop3"`
	// Proxy is the IMAP, POP3, ManageSieve and LMTP proxy of the multi-node mode: it authenticates each
	// client (auth), looks the user's mail host up in the directory and relays the
	// session to that back-end, with smtp.tls's certificate. Off unless an address is set.
	Proxy struct {
		// IMAPAddr is the listening address offering STARTTLS; IMAPSAddr of implicit TLS.
		IMAPAddr  string `yaml:"imap_addr"`
		IMAPSAddr string `yaml:"imaps_addr"`
		// POP3Addr is the listening address offering STLS; POP3SAddr of implicit TLS.
		POP3Addr  string `yaml:"pop3_addr"`
		POP3SAddr string `yaml:"pop3s_addr"`
		// ManageSieveAddr is the ManageSieve listening address (STARTTLS, RFC 5804).
		ManageSieveAddr string `yaml:"managesieve_addr"`
		// LMTPAddr is the LMTP listening address for the front-ends' delivery (RFC 2033;
		// clients from lmtp_from only): each recipient goes to its back-end's LMTP.
		LMTPAddr     string `yaml:"lmtp_addr"`
		proxy.Config `yaml:",inline"`
	} `yaml:"proxy"`
	// ManageSieve is the ManageSieve server (RFC 5804) where users manage their Sieve
	// scripts, with smtp.tls's certificate. Passwords only over TLS unless trusted: true.
	// Its script quotas are sieve.max_scripts and sieve.max_script_size.
	ManageSieve struct {
		// Addr is the listening address offering STARTTLS; empty disables it.
		Addr               string `yaml:"addr"`
		managesieve.Config `yaml:",inline"`
	} `yaml:"managesieve"`
	// Sieve filters mail at final delivery into the store (queue and LMTP listener): the
	// admin's before and after scripts around each user's active script.
	Sieve local.SieveConfig `yaml:"sieve"`
	// Web is the page on the HTTP listener where users see and release their quarantined
	// mail; its admins are the top-level admins.
	Web web.Config `yaml:"web"`
	// Quarantine is where the messages rules quarantine wait, held in the queue, until
	// their recipients release or delete them on the web page, or the lifetime ends.
	Quarantine quarantine.Config `yaml:"quarantine"`
	// Stats is the decision log: one record per SMTP transaction and recipient (who, what,
	// which rule decided, what became of it), read by portcullis report.
	Stats struct {
		// Disable turns the decision log off.
		Disable            bool `yaml:"disable"`
		decisionlog.Config `yaml:",inline"`
	} `yaml:"stats"`
	// Bayes is where the Bayesian scorer (the rule file's bayes policy, the Junk moves,
	// the quarantine release and portcullis bayes) keeps its global token database.
	Bayes struct {
		// Postgres is a PostgreSQL connection string: one site-wide token database that
		// every node classifies from (each keeping the table in memory) and trains.
		// Default: directory.postgres when the shared directory is there; empty keeps
		// the SQLite database DATA/bayes/global.db on each node.
		Postgres string `yaml:"postgres"`
		// Local is true to keep each node's SQLite database even when directory.postgres
		// is set (as before the shared token database existed).
		Local bool `yaml:"local"`
		// Refresh is how often a node reads what other nodes trained (only the changed
		// tokens). Default 30s.
		Refresh time.Duration `yaml:"refresh"`
	} `yaml:"bayes"`
	// Policyd is the Postfix policy-delegation server (check_policy_service): Postfix
	// front-ends ask portcullis's rules about each recipient. Off unless addr is set.
	Policyd policyd.Config `yaml:"policyd"`
	// Milter is the milter server (Postfix's smtpd_milters and non_smtpd_milters): every
	// stage, the data stage included, runs for mail Postfix receives. Off unless addr is
	// set.
	Milter milter.Config `yaml:"milter"`
	// DKIM signs mail from authenticated users.
	DKIM struct {
		// Sign is the signer: mail whose From: domain has a key in dir (made by
		// portcullis dkim keygen) is signed with it.
		Sign dkim.SignerConfig `yaml:"sign"`
	} `yaml:"dkim"`
}

//go:embed default-rules.yaml
var defaultRules []byte

// DefaultRules returns the built-in rule file.
func DefaultRules() []byte { return bytes.Clone(defaultRules) }

// Default returns the embedded defaults: everything on loopback, data under dataDir, the
// local domain example.test. It is what `portcullis serve` runs without --config.
func Default(dataDir string) *Config {
	c := &Config{
		Hostname:        "mx.example.test",
		DataDir:         dataDir,
		LocalDomains:    []string{"example.test"},
		TrustedNetworks: []string{"127.0.0.0/8", "::1/128"},
		Postmaster:      "postmaster@example.test",
	}
	c.Log.Level, c.Log.Format = "info", "text"
	c.HTTP.Addr = "127.0.0.1:8025"
	c.HTTP.MetricsFrom = []string{"127.0.0.0/8", "::1/128"}
	c.Web.SessionLifetime, c.Web.IdleTimeout, c.Web.MaxSessions = 12*time.Hour, 30*time.Minute, 10000
	c.Quarantine.Lifetime = quarantine.DefaultLifetime
	c.Bayes.Refresh = 30 * time.Second
	c.IMAP.Addr = "127.0.0.1:1143"
	c.POP3.Addr = "127.0.0.1:1110"
	c.ManageSieve.Addr = "127.0.0.1:4190"
	c.SMTP.Listeners = []smtpd.ListenerConfig{
		{Name: "mx", Addr: "127.0.0.1:2525", Mode: smtpd.ModeMX},
		{Name: "submission", Addr: "127.0.0.1:5870", Mode: smtpd.ModeSubmission},
		{Name: "submissions", Addr: "127.0.0.1:5465", Mode: smtpd.ModeSubmissions},
		{Name: "lmtp", Addr: "127.0.0.1:2424", Mode: smtpd.ModeLMTP},
	}
	return c
}

// Load reads a config file over the defaults (keys not in the file keep their default
// values; a listed key replaces its default wholly). dataDir, when not empty, overrides
// data_dir (the --data flag).
func Load(path, dataDir string) (*Config, error) {
	c := Default("./data")
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeStrict(data, c); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if dataDir != "" {
		c.DataDir = dataDir
	}
	if err := c.finish(); err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	return c, nil
}

// decodeStrict decodes YAML into v and rejects unknown keys, naming them.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return friendlyYAML(err)
	}
	return nil
}

// friendlyYAML rewrites "field x not found in type config.Config" as "unknown key x",
// says where a top-level key written inside a section belongs, and that a duration needs
// a unit.
func friendlyYAML(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			if i := strings.Index(e, ": field "); i >= 0 && strings.Contains(e, " not found in type ") {
				name := e[i+len(": field "):]
				name, typ, _ := strings.Cut(name, " not found in type ")
				e = e[:i] + ": unknown key " + name
				if topLevelKeys[name] && typ != "config.Config" {
					e += " (" + name + " is a top-level key of the server config)"
				}
			}
			if strings.HasSuffix(e, " into time.Duration") {
				e += ": a duration has a unit, such as 30s, 5m or 2h"
			}
			msgs[i] = e
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return err
}

// topLevelKeys are the keys of Config's first level.
var topLevelKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}()

// checkMoveFrom validates a section's move_from: the back-ends that move users, whose
// PROXY headers are read but whose TLS claims are not believed. An address also in
// proxy_from would be believed as a proxy after all, so the lists must not overlap.
func checkMoveFrom(section string, on bool, proxyFrom, moveFrom []string) error {
	if len(moveFrom) == 0 {
		return nil
	}
	if !on {
		return fmt.Errorf("%s: move_from without proxy_protocol: true (a move's connections start with a PROXY header)", section)
	}
	movers, err := netlist.Prefixes(moveFrom)
	if err != nil {
		return fmt.Errorf("%s: move_from: %w", section, err)
	}
	proxies, _ := netlist.Prefixes(proxyFrom) // checked before
	for i, m := range movers {
		for j, p := range proxies {
			if m.Overlaps(p) {
				return fmt.Errorf("%s: move_from %s overlaps proxy_from %s: a back-end that moves users belongs in move_from only (proxy_from believes its TLS claims)",
					section, moveFrom[i], proxyFrom[j])
			}
		}
	}
	return nil
}

// finish fills derived values and validates.
func (c *Config) finish() error {
	if c.DataDir == "" {
		return errors.New("data_dir is empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	c.DataDir = abs
	if len(c.IMAP.ProxyFrom) > 0 && !c.IMAP.ProxyProtocol || len(c.POP3.ProxyFrom) > 0 && !c.POP3.ProxyProtocol {
		return errors.New("imap/pop3: proxy_from without proxy_protocol: true")
	}
	// A PROXY header names the client's address and whether it used TLS, and admits the
	// proxy's master login: believed from anyone, it would let any client that reaches
	// the port claim TLS for a plaintext password. Dovecot likewise wants
	// haproxy_trusted_networks.
	if c.IMAP.ProxyProtocol && len(c.IMAP.ProxyFrom) == 0 || c.POP3.ProxyProtocol && len(c.POP3.ProxyFrom) == 0 {
		return errors.New("imap/pop3: proxy_protocol needs proxy_from, the addresses of the proxies whose headers are believed")
	}
	if _, err := netlist.Prefixes(append(slices.Clone(c.IMAP.ProxyFrom), c.POP3.ProxyFrom...)); err != nil {
		return fmt.Errorf("imap/pop3: proxy_from: %w", err)
	}
	if err := checkMoveFrom("imap", c.IMAP.ProxyProtocol, c.IMAP.ProxyFrom, c.IMAP.MoveFrom); err != nil {
		return err
	}
	if err := checkMoveFrom("pop3", c.POP3.ProxyProtocol, c.POP3.ProxyFrom, c.POP3.MoveFrom); err != nil {
		return err
	}
	if err := c.checkMode(); err != nil {
		return err
	}
	if c.Directory.LDAP != nil && c.Auth.LDAP == nil {
		return errors.New("directory.ldap reads through auth.ldap's connection: set auth.ldap")
	}
	if c.Directory.LDAP != nil && c.Directory.Postgres != "" {
		return errors.New("directory: both postgres and ldap are set; choose one")
	}
	if c.Rules == "" {
		c.Rules = filepath.Join(c.DataDir, "rules.yaml")
	}
	for i, d := range c.LocalDomains {
		c.LocalDomains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	if _, err := netlist.Prefixes(c.TrustedNetworks); err != nil {
		return fmt.Errorf("trusted_networks: %w", err)
	}
	if c.Postmaster != "" && !strings.Contains(c.Postmaster, "@") {
		return fmt.Errorf("postmaster: %q is not an address", c.Postmaster)
	}
	if c.AuthservID == "" {
		c.AuthservID = dkim.AuthServID(c.Hostname)
	}
	if c.Admins == nil && c.Postmaster != "" {
		c.Admins = []string{c.Postmaster}
	}
	for _, a := range c.Admins {
		if !strings.Contains(a, "@") {
			return fmt.Errorf("admins: %q is not an address (users are named by their address)", a)
		}
	}
	// The sections that need them get the top-level values; they are not keys there.
	c.SMTP.Hostname = c.Hostname
	c.SMTP.DataDir = c.DataDir
	c.SMTP.LocalDomains = c.LocalDomains
	c.SMTP.TrustedNetworks = c.TrustedNetworks
	c.SMTP.IPv6Prefix = c.RateLimits.IPv6Prefix
	c.Policyd.TrustedNetworks = c.TrustedNetworks
	c.Milter.TrustedNetworks = c.TrustedNetworks
	if c.Delivery.Hostname == "" {
		c.Delivery.Hostname = c.Hostname
	}
	c.Routing.LocalDomains = c.LocalDomains
	c.Routing.NullSenderUsers = c.Admins
	c.Web.Admins = c.Admins
	if c.LMTP.LocalName == "" {
		c.LMTP.LocalName = c.Hostname
	}
	if c.Relay.Hostname == "" {
		c.Relay.Hostname = c.Hostname
	}
	if c.Store.Dir == "" {
		c.Store.Dir = filepath.Join(c.DataDir, "mail")
	}
	if c.POP3.Hostname == "" {
		c.POP3.Hostname = c.Hostname
	}
	// One connection string names all shared state: a site that keeps its directory in
	// PostgreSQL keeps its decision log there too (issue 21: several front-ends share one
	// log), unless stats names its own database or file.
	if c.Stats.Postgres == "" && c.Stats.Path == "" && c.Directory.Postgres != "" {
		c.Stats.Postgres = c.Directory.Postgres
	}
	if c.Stats.Path == "" {
		c.Stats.Path = filepath.Join(c.DataDir, "decisions.db")
	}
	// The same for the Bayes token database: front-ends then classify with one
	// site-wide database that training on any node updates (issue 21).
	if c.Bayes.Postgres == "" && !c.Bayes.Local && c.Directory.Postgres != "" {
		c.Bayes.Postgres = c.Directory.Postgres
	}
	if c.Bayes.Refresh <= 0 {
		c.Bayes.Refresh = 30 * time.Second
	}
	if c.DKIM.Sign.Dir == "" {
		c.DKIM.Sign.Dir = filepath.Join(c.DataDir, "dkim")
	}
	return c.unhonoured()
}

// unhonoured reports a key that was written but would have no effect, because another
// key the admin wrote (or the server's design) cancels it.
func (c *Config) unhonoured() error {
	if c.Group != "" && c.User == "" {
		return errors.New("group: it is the group of user, which is empty")
	}
	if c.Bayes.Local && c.Bayes.Postgres != "" {
		return errors.New("bayes.local: it keeps the SQLite database, bayes.postgres names a shared one; remove one of the two")
	}
	if c.AllowRoot && c.User != "" {
		return errors.New("allow_root: with user set the server does not keep running as root; remove one of the two")
	}
	if _, err := netlist.Prefixes(c.HTTP.MetricsFrom); err != nil {
		return fmt.Errorf("http.metrics_from: %w", err)
	}
	if c.HTTP.Pprof && c.HTTP.Addr == "" {
		return errors.New("http.pprof: the profiler is served on http.addr, which is empty")
	}
	if c.Delivery.DisableDelayWarning && c.Delivery.DelayWarning != 0 {
		return errors.New("delivery.delay_warning: delay warnings are off (disable_delay_warning: true); remove one of the two")
	}
	kind, _, _ := strings.Cut(c.Routing.LocalTransport, ":")
	if k := strings.ToLower(kind); len(c.Routing.LocalUsers) > 0 && (k == "" || k == "local" || k == "virtual") {
		return errors.New("routing.local_users: with local_transport local, the local users are the user database (portcullis user add); local_users lists the users of another local transport, such as lmtp:unix:/run/dovecot/lmtp")
	}
	return nil
}

// IsLocal reports whether domain is one of ours.
func (c *Config) IsLocal(domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, d := range c.LocalDomains {
		if d == domain {
			return true
		}
	}
	return false
}
