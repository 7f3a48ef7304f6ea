package greylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/internal/redisclient"
	"github.com/portcullis-mail/portcullis/policy"
)

// Config configures greylisting. Zero values take postgrey's defaults.
type Config struct {
	// Delay is how long a new triplet is refused (postgrey --delay, default 5m).
	Delay time.Duration `yaml:"delay"`
	// RetryWindow is how long after the first attempt a retry may come and still pass
	// once the delay ran out (postgrey --retry-window, default 48h).
	RetryWindow time.Duration `yaml:"retry_window"`
	// MaxAge is how long a triplet and a client's count are kept after last seen
	// (postgrey --max-age, default 840h: 35 days).
	MaxAge time.Duration `yaml:"max_age"`
	// AutoAllowClients: a client address that passed greylisting this many times
	// (counting at most one pass an hour) is no longer greylisted (postgrey
	// --auto-whitelist-clients, default 5; 0 turns it off).
	AutoAllowClients *int `yaml:"auto_allow_clients"`
	// AutoAllowInterval: passes of one client count at most once in this interval
	// (default 1h, fixed in postgrey).
	AutoAllowInterval time.Duration `yaml:"auto_allow_interval"`
	// IPv4Prefix and IPv6Prefix are the client network of a triplet (postgrey --ipv4cidr,
	// --ipv6cidr: default 24 and 64).
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// AllowClients are never greylisted (postgrey's whitelist_clients): an address or
	// network ("192.0.2.0/24"), a host name that matches itself and its subdomains
	// ("example.com" matches mx.example.com, against the client's forward-confirmed
	// name), or /regexp/ on that name.
	AllowClients []string `yaml:"allow_clients"`
	// AllowRecipients are never greylisted (postgrey's whitelist_recipients): an address,
	// "postmaster@" (that local part at any domain), a domain (and its subdomains), or
	// /regexp/ on the address.
	AllowRecipients []string `yaml:"allow_recipients"`
	// Stage is where greylisting answers: "rcpt" (default, each recipient) or "data"
	// (once for the message, greylisted if any recipient is; some senders retry a DATA
	// refusal better).
	Stage string `yaml:"stage"`
	// Text is the reply text after "451 4.7.1 <recipient>: Recipient address rejected: "
	// (%s: seconds left, %r: the recipient's domain; default "Greylisted, try again in
	// %s seconds").
	Text string `yaml:"text"`
	// Header is the header added to a message accepted after it was greylisted (%t: the
	// delay in seconds, %h: our host name, %d: the date; default "X-Greylist: delayed %t
	// seconds by portcullis at %h; %d"); "none" adds none.
	Header string `yaml:"header"`
	// Store is where the state lives: "sqlite" (default: db, a file in the data
	// directory), "memory" (lost on restart) or "redis" (shared by front-ends; redis:).
	Store string `yaml:"store"`
	// DB is the SQLite file (default DATA/greylist.db).
	DB string `yaml:"db"`
	// Redis is the server of store: redis.
	Redis RedisConfig `yaml:"redis"`
	// OnError says what a store failure does: "accept" (default: fail open, the message
	// is not greylisted) or "tempfail" (fail closed: greylisted facts, reply 451 4.3.0).
	// After 3 failures in a row Redis is not asked for 5s (a circuit breaker), so a hung
	// server costs a few timeouts, not one per recipient.
	OnError string `yaml:"on_error"`
	// Timeout bounds one store operation (default 2s).
	Timeout time.Duration `yaml:"timeout"`
}

// RedisConfig names a Redis server.
type RedisConfig struct {
	// Addr is host:port (or a unix socket path).
	Addr string `yaml:"addr"`
	// Username and Password authenticate (Redis 6 ACL); empty for none.
	Username string `yaml:"username"`
	// Password is the password of Username (or of the default user).
	Password string `yaml:"password"`
	// DB is the database number (default 0).
	DB int `yaml:"db"`
	// Prefix is put before every key (default "portcullis:greylist:").
	Prefix string `yaml:"prefix"`
}

// Deps are what the server gives the policy.
type Deps struct {
	// Store overrides Config.Store (tests, or a program with its own store).
	Store Store
	// Hostname is our name in the X-Greylist header.
	Hostname string
	// DataDir holds the default SQLite file.
	DataDir string
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Policy greylists at the rcpt (or data) stage.
type Policy struct {
	cfg       Config
	p         Params
	awl       int64
	store     Store
	closeRDB  func() error
	stage     policy.Stage
	nets      []netip.Prefix
	names     []string
	nameRes   []*regexp.Regexp
	rcptExact map[string]bool
	rcptLocal []string
	rcptDoms  []string
	rcptRes   []*regexp.Regexp
	failShut  bool
	hostname  string
	now       func() time.Time
	log       *slog.Logger
}

var (
	_ policy.RcptPolicy   = (*Policy)(nil)
	_ policy.DataPolicy   = (*Policy)(nil)
	_ policy.FactDeclarer = (*Policy)(nil)
)

// New builds the policy and opens its store (a SQLite file or a Redis client; a Redis
// server need not be up yet).
func New(cfg Config, deps Deps) (*Policy, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.Delay, 300*time.Second)
	def(&cfg.RetryWindow, 48*time.Hour)
	def(&cfg.MaxAge, 35*24*time.Hour)
	def(&cfg.Timeout, 2*time.Second)
	def(&cfg.AutoAllowInterval, time.Hour)
	if cfg.Delay < 0 || cfg.RetryWindow < 0 || cfg.MaxAge < 0 || cfg.Timeout < 0 || cfg.AutoAllowInterval < 0 {
		return nil, errors.New("greylist: delay, retry_window, max_age, auto_allow_interval and timeout must not be negative")
	}
	if cfg.IPv4Prefix == 0 {
		cfg.IPv4Prefix = 24
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 64
	}
	if cfg.IPv4Prefix < 0 || cfg.IPv4Prefix > 32 || cfg.IPv6Prefix < 0 || cfg.IPv6Prefix > 128 {
		return nil, errors.New("greylist: ipv4_prefix must be 0..32 and ipv6_prefix 0..128")
	}
	awl := 5
	if cfg.AutoAllowClients != nil {
		awl = *cfg.AutoAllowClients
	}
	if awl < 0 {
		return nil, errors.New("greylist: auto_allow_clients must not be negative")
	}
	if cfg.Text == "" {
		cfg.Text = "Greylisted, try again in %s seconds"
	}
	if cfg.Header == "" {
		cfg.Header = "X-Greylist: delayed %t seconds by portcullis at %h; %d"
	}
	if cfg.Header != "none" {
		if name, _, ok := strings.Cut(cfg.Header, ":"); !ok || strings.ContainsAny(name, " \t") || name == "" {
			return nil, fmt.Errorf("greylist: header %q is not \"Name: value\"", cfg.Header)
		}
	}
	p := &Policy{cfg: cfg, awl: int64(awl), stage: policy.StageRcpt, rcptExact: map[string]bool{},
		hostname: deps.Hostname, now: deps.Now, log: deps.Logger}
	p.p = Params{Delay: int64(cfg.Delay / time.Second), RetryWindow: int64(cfg.RetryWindow / time.Second), MaxAge: int64(cfg.MaxAge / time.Second),
		AutoAllowInterval: int64(cfg.AutoAllowInterval / time.Second)}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.hostname == "" {
		p.hostname = "localhost"
	}
	switch cfg.Stage {
	case "", "rcpt":
	case "data":
		p.stage = policy.StageData
	default:
		return nil, fmt.Errorf("greylist: stage %q: want rcpt or data", cfg.Stage)
	}
	switch cfg.OnError {
	case "", "accept":
	case "tempfail":
		p.failShut = true
	default:
		return nil, fmt.Errorf("greylist: on_error %q: want accept or tempfail", cfg.OnError)
	}
	if err := p.allowLists(cfg); err != nil {
		return nil, err
	}
	p.store = deps.Store
	if p.store == nil {
		switch cfg.Store {
		case "", "sqlite":
			path := cfg.DB
			if path == "" {
				if deps.DataDir == "" {
					return nil, errors.New("greylist: db is required (no data directory)")
				}
				path = DefaultDBPath(deps.DataDir)
			}
			// Opened at the first check: New does no I/O (portcullis rules check builds
			// the policy without a data directory).
			l := &lazySQLite{path: path}
			p.store, p.closeRDB = l, l.Close
		case "memory":
			p.store = NewMemoryStore()
		case "redis":
			if cfg.Redis.Addr == "" {
				return nil, errors.New("greylist: store redis needs redis: {addr: host:port}")
			}
			c := redisclient.New(redisclient.Options{Addr: cfg.Redis.Addr, Username: cfg.Redis.Username, Password: cfg.Redis.Password, DB: cfg.Redis.DB, Timeout: cfg.Timeout})
			p.store, p.closeRDB = NewRedisStore(c, cfg.Redis.Prefix), c.Close
		default:
			return nil, fmt.Errorf("greylist: store %q: want sqlite, memory or redis", cfg.Store)
		}
	}
	return p, nil
}

func (p *Policy) allowLists(cfg Config) error {
	for _, s := range cfg.AllowClients {
		s = strings.TrimSpace(s)
		switch {
		case len(s) > 2 && s[0] == '/' && s[len(s)-1] == '/':
			re, err := regexp.Compile("(?i)" + s[1:len(s)-1])
			if err != nil {
				return fmt.Errorf("greylist: allow_clients %q: %w", s, err)
			}
			p.nameRes = append(p.nameRes, re)
		case strings.Contains(s, "/"):
			n, err := netip.ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("greylist: allow_clients %q: %w", s, err)
			}
			p.nets = append(p.nets, n.Masked())
		default:
			if a, err := netip.ParseAddr(s); err == nil {
				p.nets = append(p.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
				continue
			}
			if s == "" {
				return errors.New("greylist: allow_clients: empty entry")
			}
			p.names = append(p.names, strings.ToLower(strings.TrimSuffix(s, ".")))
		}
	}
	for _, s := range cfg.AllowRecipients {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case len(s) > 2 && s[0] == '/' && s[len(s)-1] == '/':
			re, err := regexp.Compile("(?i)" + s[1:len(s)-1])
			if err != nil {
				return fmt.Errorf("greylist: allow_recipients %q: %w", s, err)
			}
			p.rcptRes = append(p.rcptRes, re)
		case strings.HasSuffix(s, "@"):
			p.rcptLocal = append(p.rcptLocal, s)
		case strings.Contains(s, "@"):
			p.rcptExact[s] = true
		case s != "":
			p.rcptDoms = append(p.rcptDoms, s)
		default:
			return errors.New("greylist: allow_recipients: empty entry")
		}
	}
	return nil
}

// Stages says the one stage greylisting answers at.
func (p *Policy) Stages() []policy.Stage { return []policy.Stage{p.stage} }

// Close closes the store the policy opened.
func (p *Policy) Close() error {
	if p.closeRDB != nil {
		return p.closeRDB()
	}
	return nil
}

func (p *Policy) clientAllowed(c *policy.Conn) bool {
	ip := c.IP.Unmap()
	for _, n := range p.nets {
		if n.Contains(ip) {
			return true
		}
	}
	name := strings.ToLower(c.Hostname)
	if name == "" {
		return false
	}
	for _, d := range p.names {
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	for _, re := range p.nameRes {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

func (p *Policy) rcptAllowed(rcpt string) bool {
	rcpt = strings.ToLower(rcpt)
	if p.rcptExact[rcpt] {
		return true
	}
	local, domain, _ := strings.Cut(rcpt, "@")
	for _, l := range p.rcptLocal {
		if local+"@" == l {
			return true
		}
	}
	for _, d := range p.rcptDoms {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	for _, re := range p.rcptRes {
		if re.MatchString(rcpt) {
			return true
		}
	}
	return false
}

// Decision is the outcome of one triplet.
type Decision struct {
	Greylisted bool
	// DelayLeft is how long the client must still wait (seconds), when greylisted.
	DelayLeft int64
	// Passed: the triplet passed now for the first time (the X-Greylist header goes on
	// the message); Delayed is then how long it was delayed.
	Passed  bool
	Delayed int64
	// Skipped names why greylisting did not apply: "authenticated", "trusted",
	// "client allow-list", "recipient allow-list", "auto-allowed client".
	Skipped string
	Key     string
}

// Check decides one triplet at now: postgrey's smtpd_access_policy.
func (p *Policy) Check(ctx context.Context, c *policy.Conn, sender, rcpt string, now time.Time) (Decision, error) {
	switch {
	case c.AuthUser != "":
		return Decision{Skipped: "authenticated"}, nil
	case c.Trusted:
		return Decision{Skipped: "trusted"}, nil
	case p.clientAllowed(c):
		return Decision{Skipped: "client allow-list"}, nil
	case p.rcptAllowed(rcpt):
		return Decision{Skipped: "recipient allow-list"}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	t := now.Unix()
	ip := c.IP.Unmap().String()
	if p.awl > 0 {
		ok, err := p.store.ClientAllowed(ctx, ip, t, p.awl, p.p)
		if err != nil {
			return Decision{}, err
		}
		if ok {
			return Decision{Skipped: "auto-allowed client"}, nil
		}
	}
	key := TripletKey(ClientNet(c.IP, p.cfg.IPv4Prefix, p.cfg.IPv6Prefix), sender, rcpt)
	e, passedBefore, err := p.store.Triplet(ctx, key, t, p.p)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Key: key}
	left := p.p.Delay - (t - e.First)
	if p.awl > 0 && left <= 0 && !passedBefore {
		if err := p.store.ClientPassed(ctx, ip, t, p.p); err != nil {
			return Decision{}, err
		}
	}
	if left > 0 {
		d.Greylisted, d.DelayLeft = true, left
		return d, nil
	}
	if !passedBefore {
		d.Passed, d.Delayed = true, t-e.First
	}
	return d, nil
}

// CheckRcpt greylists tx.Rcpt. The X-Greylist header goes on a message once: not when an
// earlier recipient of the message already gave one (postgrey remembers its last
// messages for the same purpose).
func (p *Policy) CheckRcpt(ctx context.Context, tx *policy.Transaction) policy.Result {
	now := p.now()
	d, err := p.Check(ctx, &tx.Conn, tx.Envelope.From.String(), tx.Rcpt.String(), now)
	r := p.result(d, err, tx.Rcpt.String(), now)
	if len(r.Headers) == 1 {
		for _, h := range tx.HeadersToAdd() {
			if strings.EqualFold(h.Name, r.Headers[0].Name) {
				r.Headers = nil
				break
			}
		}
	}
	return r
}

// CheckData greylists every recipient of the message: greylisted if any is.
func (p *Policy) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	now := p.now()
	var all Decision
	rcpt := ""
	for _, r := range tx.Envelope.Rcpts {
		d, err := p.Check(ctx, &tx.Conn, tx.Envelope.From.String(), r.String(), now)
		if err != nil {
			return p.result(d, err, r.String(), now)
		}
		if d.Greylisted && (!all.Greylisted || d.DelayLeft > all.DelayLeft) {
			all, rcpt = d, r.String()
		}
		if !all.Greylisted {
			if d.Passed && d.Delayed >= all.Delayed {
				all.Passed, all.Delayed, all.Key = true, d.Delayed, d.Key
			}
			if all.Skipped == "" || d.Skipped == "" {
				all.Skipped = d.Skipped
			}
			rcpt = r.String()
		}
	}
	return p.result(all, nil, rcpt, now)
}

// result turns a decision into a result. Status: fail when greylisted
// (greylist.greylisted), pass otherwise (greylist.passed the first time a triplet passes,
// greylist.known after, greylist.skipped for allow-listed, authenticated and trusted
// clients and auto-allowed ones), temperror when the store failed (greylist.error).
func (p *Policy) result(d Decision, err error, rcpt string, now time.Time) policy.Result {
	facts := map[string]any{
		"greylisted": d.Greylisted, "reply": "", "delay_left": int(d.DelayLeft), "delayed": int(d.Delayed),
		"passed": d.Passed, "skipped": d.Skipped, "triplet": d.Key, "error": "",
	}
	if err != nil {
		p.log.Warn("greylist: store failed", "err", err, "on_error", p.cfg.OnError)
		facts["error"] = err.Error()
		if p.failShut {
			facts["greylisted"] = true
			facts["reply"] = "451 4.3.0 <" + rcpt + ">: Recipient address rejected: greylisting is unavailable, try again later"
		}
		return policy.Result{Status: policy.StatusTempError, Reason: "greylist.error", Facts: facts, Err: err}
	}
	r := policy.Result{Status: policy.StatusPass, Facts: facts}
	switch {
	case d.Greylisted:
		text := strings.ReplaceAll(p.cfg.Text, "%s", strconv.FormatInt(d.DelayLeft, 10))
		_, dom, _ := strings.Cut(rcpt, "@")
		text = strings.ReplaceAll(text, "%r", dom)
		facts["reply"] = "451 4.7.1 <" + rcpt + ">: Recipient address rejected: " + text
		r.Status, r.Reason = policy.StatusFail, "greylist.greylisted"
	case d.Skipped != "":
		r.Reason = "greylist.skipped"
	case d.Passed:
		r.Reason = "greylist.passed"
		if p.cfg.Header != "none" {
			h := strings.NewReplacer("%t", strconv.FormatInt(d.Delayed, 10), "%h", p.hostname,
				"%d", now.Format("Mon, 02 Jan 2006 15:04:05 MST")).Replace(p.cfg.Header)
			name, val, _ := strings.Cut(h, ":")
			r.Headers = []policy.Header{{Name: name, Value: strings.TrimSpace(val)}}
		}
	default:
		r.Reason = "greylist.known"
	}
	return r
}

// DeclareFacts declares the facts with example values.
func (p *Policy) DeclareFacts() map[string]any {
	return p.result(Decision{Greylisted: true, DelayLeft: 300, Key: "192.0.2.0/a@example.com/b@example.org"}, nil, "b@example.org", time.Now()).Facts
}
