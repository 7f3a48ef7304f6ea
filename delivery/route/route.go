// Package route decides where each recipient goes, as Postfix's trivial-rewrite and
// cleanup do: canonical rewriting of sender and recipient (canonical(5)), virtual alias
// expansion (virtual(5): one-to-many, nested, catch-all @domain), local aliases
// (aliases(5) without commands, files or :include:), then a transport per final
// recipient from the transport map (transport(5)): local delivery, LMTP to a store, SMTP
// to the domain's mail exchangers or to a relay host, or a configured error.
//
// Maps are text files in Postfix syntax, read at first use and again when their
// modification time or size changes (checked at most every CheckInterval) or on Reload
// (SIGHUP); a file that no longer parses keeps the previous contents and logs why.
//
// Valid answers the SMTP server's question at RCPT time (smtpd.RecipientValidator): is
// this recipient of a local domain known? An unknown one gets 550 5.1.1 in the dialogue,
// so the MX never accepts mail it would have to bounce.
package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/address"
)

// Kind is a delivery transport.
type Kind string

// The transports.
const (
	Local Kind = "local" // the local delivery agent (the mail store)
	LMTP  Kind = "lmtp"  // LMTP to NextHop ("HOST:PORT" or "unix:/PATH")
	SMTP  Kind = "smtp"  // SMTP to NextHop (a domain for MX lookup, or "[HOST]:PORT")
	Error Kind = "error" // fail the recipient with Reply (transport "error:5.1.1 text")
)

// Destination is where one final recipient goes.
type Destination struct {
	// Rcpt is the address to deliver to, after canonical rewriting and alias expansion.
	Rcpt string
	// Original is the recipient that was resolved (the envelope recipient).
	Original string
	Kind     Kind
	// NextHop is the LMTP destination, the SMTP next hop ("example.org" for its MX
	// records, "[smtp.example.net]:587"), or "" for local.
	NextHop string
	// Reply is the SMTP reply for Kind Error ("550 5.1.1 mailbox disabled").
	Reply string
}

// Dest names the destination for per-destination concurrency and grouping:
// "local", "lmtp:unix:/run/dovecot/lmtp", "smtp:example.org", "smtp:[relay]:587".
func (d Destination) Dest() string {
	if d.NextHop == "" {
		return string(d.Kind)
	}
	return string(d.Kind) + ":" + d.NextHop
}

// Config configures a Router. Map fields are file paths ("" for none); a "texthash:" or
// "hash:" prefix is accepted and ignored (the text file is read either way).
type Config struct {
	// LocalDomains are delivered by LocalTransport; their recipients must be known (a
	// local user, an alias or a virtual alias). Not a key of the routing: section: the
	// server config sets it from its top-level local_domains.
	LocalDomains []string `yaml:"-"`
	// VirtualDomains exist only through virtual aliases (Postfix virtual_alias_domains):
	// an address there that no virtual alias matches is unknown.
	VirtualDomains []string `yaml:"virtual_domains"`
	// Aliases is an aliases(5) file for local domains: "name: address, address".
	Aliases string `yaml:"aliases"`
	// VirtualAliases is a virtual(5) file: "user@domain address...", "@domain address"
	// (catch-all), "user address..." (a local part, in local domains only).
	VirtualAliases string `yaml:"virtual_aliases"`
	// Canonical, SenderCanonical and RecipientCanonical are canonical(5) files:
	// "user@domain address", "user address" (local domains), "@domain address" or
	// "@domain @other" (the local part kept). The specific maps apply before Canonical.
	Canonical          string `yaml:"canonical"`
	SenderCanonical    string `yaml:"sender_canonical"`
	RecipientCanonical string `yaml:"recipient_canonical"`
	// Transport is a transport(5) file: "user@domain", "domain", ".parent.domain" or
	// "*" followed by "lmtp:HOST:PORT", "lmtp:unix:/PATH", "smtp:[HOST]:PORT",
	// "smtp:HOST" (MX lookup), "smtp:" (the recipient's domain), "local" or
	// "error:5.1.1 text".
	Transport string `yaml:"transport"`
	// LocalTransport carries local domains when the transport map says nothing. [local]
	// For a Dovecot store: "lmtp:unix:/run/dovecot/lmtp".
	LocalTransport string `yaml:"local_transport"`
	// RelayHost, when set, carries every other domain ("[smtp.example.net]:587"), as
	// Postfix's relayhost; otherwise they go to their mail exchangers.
	RelayHost string `yaml:"relay_host"`
	// RecipientDelimiter separates an address extension: user+tag@domain is looked up as
	// itself first, then as user@domain. Several characters mean any of them, as in
	// Postfix 2.11 and later ("+-"). ["+"]; "-" for qmail style. The same setting names
	// the mailbox of local delivery.
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	// LocalUsers are addresses of local domains that exist (user@domain), for
	// validation when LocalUserExists is nil.
	LocalUsers []string `yaml:"local_users"`
	// LocalUserExists says whether a local address (extension removed, lower case)
	// exists, for example the auth package's user database. It is asked before
	// LocalUsers. When both are empty, every address of a local domain is valid.
	LocalUserExists func(ctx context.Context, address string) (bool, error) `yaml:"-"`
	// SenderLoginMap is a file in Postfix's smtpd_sender_login_maps format: "sender
	// user, user..." (keys: user@domain, user in local domains, @domain, and "<>" for
	// the null sender). The users listed own the sender address besides the owners the
	// other maps give it: the user whose address it is and the users its aliases and
	// virtual aliases deliver to.
	SenderLoginMap string `yaml:"sender_login_map"`
	// NullSenderUsers own the null sender <> (see Owns), besides the users the sender
	// login map lists under "<>". Not a key of the routing: section: the server config
	// sets it from its top-level admins.
	NullSenderUsers []string `yaml:"-"`
	// MaxExpansion bounds the final recipients of one address. [1000]
	MaxExpansion int `yaml:"max_expansion"`
	// MaxDepth bounds alias nesting. [20]
	MaxDepth int `yaml:"max_depth"`
	// CheckInterval is how often map files are checked for changes. [1s]
	CheckInterval time.Duration `yaml:"check_interval"`
	// Logger gets map reloads and reload errors. [slog.Default()]
	Logger *slog.Logger `yaml:"-"`
}

// Router resolves recipients. It is safe for concurrent use.
type Router struct {
	cfg       Config
	local     map[string]bool
	virtual   map[string]bool
	users     map[string]bool
	localTr   Destination
	relay     Destination
	aliases   *fileMap
	valiases  *fileMap
	canon     *fileMap
	sCanon    *fileMap
	rCanon    *fileMap
	transport *fileMap
	logins    *fileMap
	nullUsers map[string]bool
	maps      []*fileMap
}

// ErrUnknown marks a recipient of a local or virtual domain that does not exist.
var ErrUnknown = errors.New("unknown recipient")

// ResolveError is a failure to resolve a recipient. Reply is the SMTP reply for a
// bounce or deferral ("550 5.1.1 ...", "554 5.4.6 alias loop ..."); Temporary says
// whether a retry may succeed (a user database that did not answer).
type ResolveError struct {
	Rcpt      string
	Reply     string
	Temporary bool
	Err       error
}

func (e *ResolveError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("route: %s: %s: %v", e.Rcpt, e.Reply, e.Err)
	}
	return fmt.Sprintf("route: %s: %s", e.Rcpt, e.Reply)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// New returns a Router. It does no I/O: map files are read at the first lookup or
// Reload (call Reload at start to see map errors at once).
func New(cfg Config) (*Router, error) {
	if cfg.RecipientDelimiter == "" {
		cfg.RecipientDelimiter = "+"
	}
	if cfg.MaxExpansion <= 0 {
		cfg.MaxExpansion = 1000
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = 20
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LocalTransport == "" {
		cfg.LocalTransport = "local"
	}
	r := &Router{cfg: cfg, local: map[string]bool{}, virtual: map[string]bool{}, users: map[string]bool{}, nullUsers: map[string]bool{}}
	for _, u := range cfg.NullSenderUsers {
		r.nullUsers[canonUser(u)] = true
	}
	for _, d := range cfg.LocalDomains {
		r.local[normDomain(d)] = true
	}
	for _, d := range cfg.VirtualDomains {
		d = normDomain(d)
		if r.local[d] {
			return nil, fmt.Errorf("route: domain %s is both local and virtual", d)
		}
		r.virtual[d] = true
	}
	for _, u := range cfg.LocalUsers {
		local, domain, ok := address.Split(u)
		if !ok || !r.local[domain] {
			return nil, fmt.Errorf("route: local user %q is not an address in a local domain", u)
		}
		r.users[r.base(local)+"@"+domain] = true
	}
	var err error
	if r.localTr, err = parseTransport(cfg.LocalTransport); err != nil {
		return nil, fmt.Errorf("route: local_transport: %w", err)
	}
	if r.localTr.Kind == SMTP && r.localTr.NextHop == "" {
		return nil, errors.New("route: local_transport smtp needs a next hop")
	}
	if cfg.RelayHost != "" {
		r.relay = Destination{Kind: SMTP, NextHop: strings.TrimPrefix(cfg.RelayHost, "smtp:")}
		if strings.ContainsAny(r.relay.NextHop, " \t,") {
			return nil, fmt.Errorf("route: relay_host %q", cfg.RelayHost)
		}
	}
	mk := func(path string, syntax Syntax, validate func(Entry) error) *fileMap {
		if path == "" {
			return nil
		}
		m := newFileMap(path, syntax, cfg.CheckInterval, cfg.Logger, validate)
		r.maps = append(r.maps, m)
		return m
	}
	r.aliases = mk(cfg.Aliases, Aliases, validAlias)
	r.valiases = mk(cfg.VirtualAliases, Table, validVirtual)
	r.canon = mk(cfg.Canonical, Table, validCanonical)
	r.sCanon = mk(cfg.SenderCanonical, Table, validCanonical)
	r.rCanon = mk(cfg.RecipientCanonical, Table, validCanonical)
	r.transport = mk(cfg.Transport, Table, func(e Entry) error {
		if len(e.Values) != 1 && !strings.HasPrefix(e.Values[0], "error:") {
			return fmt.Errorf("transport for %q: want one transport:nexthop", e.Key)
		}
		_, err := parseTransport(strings.Join(e.Values, " "))
		return err
	})
	r.logins = mk(cfg.SenderLoginMap, Table, func(e Entry) error {
		for _, v := range e.Values {
			if err := checkAddr(v); err != nil {
				return fmt.Errorf("sender login %q: %w", e.Key, err)
			}
		}
		return nil
	})
	return r, nil
}

// Reload reads every map file again now (SIGHUP). A map that fails keeps its previous
// contents; the errors are returned joined.
func (r *Router) Reload() error {
	var errs []error
	for _, m := range r.maps {
		if err := m.load(true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func validAlias(e Entry) error {
	for _, v := range e.Values {
		switch {
		case strings.HasPrefix(v, "|"):
			return fmt.Errorf("alias %q: delivery to a command (%s) is not supported", e.Key, v)
		case strings.HasPrefix(v, "/"):
			return fmt.Errorf("alias %q: delivery to a file (%s) is not supported", e.Key, v)
		case strings.HasPrefix(strings.ToLower(v), ":include:"):
			return fmt.Errorf("alias %q: :include: is not supported", e.Key)
		}
		if err := checkAddr(v); err != nil {
			return fmt.Errorf("alias %q: %w", e.Key, err)
		}
	}
	return nil
}

func validVirtual(e Entry) error {
	for _, v := range e.Values {
		if err := checkAddr(v); err != nil {
			return fmt.Errorf("virtual alias %q: %w", e.Key, err)
		}
	}
	return nil
}

func validCanonical(e Entry) error {
	if len(e.Values) != 1 {
		return fmt.Errorf("canonical %q: want one address, got %d", e.Key, len(e.Values))
	}
	if v := e.Values[0]; !strings.HasPrefix(v, "@") {
		return checkAddr(v)
	}
	return nil
}

func checkAddr(v string) error {
	if len(v) > 320 || strings.ContainsAny(v, "<>\r\n\x00") {
		return fmt.Errorf("bad address %q", v)
	}
	if strings.HasSuffix(v, "@") || strings.HasPrefix(v, "@") {
		return fmt.Errorf("bad address %q", v)
	}
	return nil
}

// parseTransport reads "kind:nexthop" from a transport map or local_transport.
func parseTransport(v string) (Destination, error) {
	kind, hop, _ := strings.Cut(v, ":")
	switch strings.ToLower(kind) {
	case "local", "virtual":
		return Destination{Kind: Local}, nil
	case "lmtp":
		if hop == "" {
			return Destination{}, fmt.Errorf("transport %q: lmtp needs HOST:PORT or unix:/PATH", v)
		}
		if p, ok := strings.CutPrefix(hop, "unix:"); ok && !strings.HasPrefix(p, "/") {
			return Destination{}, fmt.Errorf("transport %q: socket path must be absolute", v)
		}
		return Destination{Kind: LMTP, NextHop: hop}, nil
	case "smtp", "relay", "":
		return Destination{Kind: SMTP, NextHop: hop}, nil
	case "error":
		code := "550"
		text := strings.TrimSpace(hop)
		if text == "" {
			text = "5.0.0 delivery disabled"
		}
		if text[0] == '4' {
			code = "450"
		}
		if !(text[0] == '4' || text[0] == '5') || len(text) < 5 || text[1] != '.' {
			text = "5.0.0 " + text
		}
		return Destination{Kind: Error, Reply: code + " " + text}, nil
	}
	return Destination{}, fmt.Errorf("transport %q: unknown transport %q (want local, lmtp, smtp or error)", v, kind)
}

func normDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// base removes the address extension from a local part ("user+tag" → "user") and
// folds it to lower case.
func (r *Router) base(local string) string {
	return address.StripExtension(strings.ToLower(local), r.cfg.RecipientDelimiter)
}

// ensure loads every map that was never loaded. A map that cannot be read makes
// lookups fail temporarily rather than pretend it is empty (which would reject or
// misroute mail).
func (r *Router) ensure(rcpt string) error {
	for _, m := range r.maps {
		if m.data.Load() == nil {
			if err := m.load(false); err != nil {
				return &ResolveError{Rcpt: rcpt, Reply: "451 4.3.0 routing tables unavailable", Temporary: true, Err: err}
			}
		}
	}
	return nil
}

// IsLocal reports whether domain is a local domain.
func (r *Router) IsLocal(domain string) bool { return r.local[normDomain(domain)] }

// RewriteSender applies sender_canonical and canonical to a reverse-path. The null
// sender stays null.
func (r *Router) RewriteSender(ctx context.Context, from string) (string, error) {
	if from == "" {
		return "", nil
	}
	if err := r.ensure(from); err != nil {
		return from, err
	}
	return r.canonical(from, r.sCanon), nil
}

// RewriteRecipient applies recipient_canonical and canonical to an address.
func (r *Router) RewriteRecipient(ctx context.Context, rcpt string) (string, error) {
	if err := r.ensure(rcpt); err != nil {
		return rcpt, err
	}
	return r.canonical(rcpt, r.rCanon), nil
}

func (r *Router) canonical(addr string, specific *fileMap) string {
	for _, m := range []*fileMap{specific, r.canon} {
		if m == nil {
			continue
		}
		local, domain, ok := address.Split(addr)
		if !ok {
			continue
		}
		keys := []string{strings.ToLower(local) + "@" + domain}
		if b := r.base(local); b != strings.ToLower(local) {
			keys = append(keys, b+"@"+domain)
		}
		if r.local[domain] {
			keys = append(keys, strings.ToLower(local), r.base(local))
		}
		keys = append(keys, "@"+domain)
		for _, k := range keys {
			if v, found := m.get(k); found {
				if nd, isDomain := strings.CutPrefix(v[0], "@"); isDomain {
					addr = local + "@" + nd // @domain @other: keep the local part
				} else {
					addr = v[0]
				}
				break
			}
		}
	}
	return addr
}

// lookupVirtual returns the virtual alias expansion of addr (virtual(5) order:
// user@domain, user@domain without extension, user for local domains, @domain).
func (r *Router) lookupVirtual(local, domain string) ([]string, bool) {
	if r.valiases == nil {
		return nil, false
	}
	l := strings.ToLower(local)
	keys := []string{l + "@" + domain}
	if b := r.base(local); b != l {
		keys = append(keys, b+"@"+domain)
	}
	if r.local[domain] {
		keys = append(keys, l)
		if b := r.base(local); b != l {
			keys = append(keys, b)
		}
	}
	keys = append(keys, "@"+domain)
	for _, k := range keys {
		if v, ok := r.valiases.get(k); ok {
			return v, true
		}
	}
	return nil, false
}

func (r *Router) lookupAlias(local string) ([]string, bool) {
	if r.aliases == nil {
		return nil, false
	}
	l := strings.ToLower(local)
	if v, ok := r.aliases.get(l); ok {
		return v, true
	}
	if b := r.base(local); b != l {
		return r.aliases.get(b)
	}
	return nil, false
}

// Expand returns the final recipients of rcpt: recipient canonical rewriting, then
// virtual aliases and (in local domains) aliases, recursively. An address that an alias
// lists among its own targets is final (virtual(5): "user@domain user@domain, other");
// a longer cycle is a loop, a permanent *ResolveError. Duplicates are removed.
func (r *Router) Expand(ctx context.Context, rcpt string) ([]string, error) {
	if err := r.ensure(rcpt); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	var walk func(addr string, path []string) error
	walk = func(addr string, path []string) error {
		if err := ctx.Err(); err != nil {
			return &ResolveError{Rcpt: rcpt, Reply: "451 4.3.0 resolving interrupted", Temporary: true, Err: err}
		}
		addr = r.canonical(addr, r.rCanon)
		key := strings.ToLower(addr)
		if slices.Contains(path, key) {
			return &ResolveError{Rcpt: rcpt, Reply: "554 5.4.6 alias loop: " + strings.Join(append(path, key), " -> ")}
		}
		if len(path) > r.cfg.MaxDepth {
			return &ResolveError{Rcpt: rcpt, Reply: fmt.Sprintf("554 5.4.6 aliases nested deeper than %d", r.cfg.MaxDepth)}
		}
		local, domain, ok := address.Split(addr)
		var targets []string
		var found bool
		if ok {
			targets, found = r.lookupVirtual(local, domain)
			if !found && r.local[domain] {
				targets, found = r.lookupAlias(local)
			}
			// A bare name (as Postfix qualifies it with $myorigin) is a user of the
			// domain being expanded.
			if slices.ContainsFunc(targets, func(t string) bool { return !strings.Contains(t, "@") }) {
				targets = slices.Clone(targets) // the map's slice is shared
				for i, t := range targets {
					if !strings.Contains(t, "@") {
						targets[i] = t + "@" + domain
					}
				}
			}
		}
		if !found {
			if !seen[key] {
				if len(out) >= r.cfg.MaxExpansion {
					return &ResolveError{Rcpt: rcpt, Reply: fmt.Sprintf("554 5.4.6 alias expands to more than %d recipients", r.cfg.MaxExpansion)}
				}
				seen[key] = true
				out = append(out, addr)
			}
			return nil
		}
		next := append(slices.Clip(path), key)
		for _, t := range targets {
			if strings.EqualFold(t, addr) { // an alias that includes itself delivers to itself
				if !seen[key] {
					seen[key] = true
					out = append(out, addr)
				}
				continue
			}
			if err := walk(t, next); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(rcpt, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// Route returns the destination of one final recipient (already expanded): the
// transport map, then LocalTransport for local domains, the relay host or the
// recipient domain's mail exchangers. Recipients of virtual domains that reach here
// matched no virtual alias: unknown.
func (r *Router) Route(ctx context.Context, rcpt string) (Destination, error) {
	if err := r.ensure(rcpt); err != nil {
		return Destination{}, err
	}
	local, domain, ok := address.Split(rcpt)
	if !ok {
		return Destination{}, &ResolveError{Rcpt: rcpt, Reply: "553 5.1.3 bad recipient address syntax"}
	}
	d := Destination{Rcpt: rcpt, Original: rcpt}
	if r.virtual[domain] {
		return Destination{}, &ResolveError{Rcpt: rcpt, Reply: "550 5.1.1 <" + rcpt + ">: recipient address rejected: user unknown in virtual alias table", Err: ErrUnknown}
	}
	if t, ok := r.lookupTransport(local, domain); ok {
		t.Rcpt, t.Original = rcpt, rcpt
		if t.Kind == SMTP && t.NextHop == "" {
			if r.relay.NextHop != "" && !r.local[domain] {
				t.NextHop = r.relay.NextHop
			} else {
				t.NextHop = domain
			}
		}
		return t, nil
	}
	switch {
	case r.local[domain]:
		t := r.localTr
		d.Kind, d.NextHop, d.Reply = t.Kind, t.NextHop, t.Reply
	case r.relay.NextHop != "":
		d.Kind, d.NextHop = SMTP, r.relay.NextHop
	default:
		d.Kind, d.NextHop = SMTP, domain
	}
	return d, nil
}

func (r *Router) lookupTransport(local, domain string) (Destination, bool) {
	if r.transport == nil {
		return Destination{}, false
	}
	keys := []string{strings.ToLower(local) + "@" + domain}
	if b := r.base(local); b != strings.ToLower(local) {
		keys = append(keys, b+"@"+domain)
	}
	keys = append(keys, domain)
	// transport(5): ".domain" matches subdomains of domain.
	for d := domain; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		keys = append(keys, d[i:])
		d = d[i+1:]
	}
	keys = append(keys, "*")
	for _, k := range keys {
		if v, ok := r.transport.get(k); ok {
			t, err := parseTransport(strings.Join(v, " "))
			if err != nil { // checked at load; cannot happen
				continue
			}
			return t, true
		}
	}
	return Destination{}, false
}

// Resolve expands rcpt and routes each final recipient. Every Destination has Original
// set to rcpt.
func (r *Router) Resolve(ctx context.Context, rcpt string) ([]Destination, error) {
	addrs, err := r.Expand(ctx, rcpt)
	if err != nil {
		return nil, err
	}
	out := make([]Destination, 0, len(addrs))
	for _, a := range addrs {
		d, err := r.Route(ctx, a)
		if err != nil {
			var re *ResolveError
			if errors.As(err, &re) {
				re.Rcpt = rcpt
			}
			return nil, err
		}
		d.Original = rcpt
		out = append(out, d)
	}
	return out, nil
}

// Valid reports whether rcpt may be accepted at RCPT time: an address of a local domain
// must be a virtual alias, an alias or a local user; one of a virtual domain a virtual
// alias. Other domains are not this function's business (relay control is): true. The
// error is a lookup failure (the user database did not answer): tempfail, not reject.
func (r *Router) Valid(ctx context.Context, rcpt string) (bool, error) {
	addr, err := r.RewriteRecipient(ctx, rcpt)
	if err != nil {
		return false, err
	}
	local, domain, ok := address.Split(addr)
	if !ok {
		return false, nil
	}
	if !r.local[domain] && !r.virtual[domain] {
		return true, nil
	}
	if _, found := r.lookupVirtual(local, domain); found {
		return true, nil
	}
	if r.virtual[domain] {
		return false, nil
	}
	if _, found := r.lookupAlias(local); found {
		return true, nil
	}
	// A transport map entry for the address itself (e.g. error:) also makes it known.
	if r.transport != nil {
		if _, found := r.transport.get(strings.ToLower(local) + "@" + domain); found {
			return true, nil
		}
	}
	base := r.base(local) + "@" + domain
	if f := r.cfg.LocalUserExists; f != nil {
		ok, err := f(ctx, base)
		if err != nil {
			return false, fmt.Errorf("route: looking up local user %s: %w", base, err)
		}
		if ok {
			return true, nil
		}
		return r.users[base], nil
	}
	if len(r.users) > 0 {
		return r.users[base], nil
	}
	return true, nil
}

// ValidRecipient implements smtpd.RecipientValidator.
func (r *Router) ValidRecipient(ctx context.Context, rcpt address.Address) (bool, error) {
	return r.Valid(ctx, rcpt.String())
}
