package auth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/internal/idle"
)

// LDAPConfig configures search-then-bind authentication against OpenLDAP or Active
// Directory: the service account (or an anonymous bind) searches for the user's entry
// with Filter, then the entry's DN is bound with the user's password (RFC 4513 §5.1.3).
type LDAPConfig struct {
	// URL is ldap://host:port or ldaps://host:port (implicit TLS).
	URL string `yaml:"url"`
	// StartTLS upgrades an ldap:// connection with StartTLS (RFC 4511 §4.14) before any
	// bind. A plain ldap:// URL without StartTLS is refused unless the host is a
	// loopback address or AllowPlaintext is set, since passwords travel in the bind.
	StartTLS       bool `yaml:"start_tls"`
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// BindDN and BindPassword are the service account that searches; empty BindDN
	// searches anonymously.
	BindDN       string `yaml:"bind_dn"`
	BindPassword string `yaml:"bind_password"`
	// BaseDN is where users are searched (whole subtree).
	BaseDN string `yaml:"base_dn"`
	// Filter finds the user's entry; every %s is replaced by the login name, escaped
	// with RFC 4515 rules. Default "(&(objectClass=inetOrgPerson)(mail=%s))"; for
	// Active Directory e.g. "(&(objectClass=user)(|(mail=%s)(userPrincipalName=%s)))".
	Filter string `yaml:"filter"`
	// RecipientFilter finds an entry for a recipient address (default: Filter).
	RecipientFilter string `yaml:"recipient_filter"`
	// MailAttribute holds the canonical address returned on success (default "mail").
	MailAttribute string `yaml:"mail_attribute"`
	// Timeout bounds each attempt: dial, TLS, binds and search (default 5s).
	Timeout time.Duration `yaml:"timeout"`
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify disables certificate verification (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// MaxIdleConns keeps this many connections open between attempts (default 4;
	// negative: a new connection per attempt). MaxConns bounds connections in use at
	// once (default 16); further attempts wait within their context.
	MaxIdleConns int `yaml:"max_idle_conns"`
	MaxConns     int `yaml:"max_conns"`
	// IdleTimeout closes pooled connections unused this long (default 1m), before a
	// server or firewall drops them.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

const defaultLDAPFilter = "(&(objectClass=inetOrgPerson)(mail=%s))"

// LDAP authenticates against an LDAP directory. It is safe for concurrent use.
type LDAP struct {
	cfg  LDAPConfig
	url  *url.URL
	host string
	log  *slog.Logger

	tlsOnce sync.Once
	tlsConf *tls.Config
	tlsErr  error

	sem  chan struct{}
	idle idle.Stack[*ldapConn]

	stampWarn sync.Once
	// stampSeen records which groups of stampAttrs Stamp has found, each logged once.
	stampSeen [3]atomic.Bool
	now       func() time.Time
}

type ldapConn struct {
	raw      net.Conn
	c        *ldap.Conn
	lastUsed time.Time
	pooled   bool // taken from the pool (may have been closed by the server meanwhile)
}

// NewLDAP checks cfg and returns an LDAP authenticator; it does no I/O (the CA file is
// read at the first connection; Check tries one).
func NewLDAP(cfg LDAPConfig, log *slog.Logger) (*LDAP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, fmt.Errorf("auth: ldap url %q: want ldap://host:port or ldaps://host:port", cfg.URL)
	}
	if u.Scheme == "ldaps" && cfg.StartTLS {
		return nil, fmt.Errorf("auth: ldap url %q: start_tls with ldaps://", cfg.URL)
	}
	host := u.Hostname()
	if u.Port() == "" {
		if u.Scheme == "ldaps" {
			u.Host = net.JoinHostPort(host, ldap.DefaultLdapsPort)
		} else {
			u.Host = net.JoinHostPort(host, ldap.DefaultLdapPort)
		}
	}
	if u.Scheme == "ldap" && !cfg.StartTLS && !cfg.AllowPlaintext && !isLoopback(host) {
		return nil, fmt.Errorf("auth: ldap url %q: passwords would travel in clear: use ldaps://, start_tls, or allow_plaintext", cfg.URL)
	}
	if cfg.BaseDN == "" {
		return nil, errors.New("auth: ldap base_dn is empty")
	}
	if _, err := ldap.ParseDN(cfg.BaseDN); err != nil {
		return nil, fmt.Errorf("auth: ldap base_dn %q: %w", cfg.BaseDN, err)
	}
	if cfg.BindDN != "" && cfg.BindPassword == "" {
		return nil, errors.New("auth: ldap bind_dn without bind_password (an unauthenticated bind)")
	}
	if cfg.Filter == "" {
		cfg.Filter = defaultLDAPFilter
	}
	if cfg.RecipientFilter == "" {
		cfg.RecipientFilter = cfg.Filter
	}
	for _, f := range []string{cfg.Filter, cfg.RecipientFilter} {
		if !strings.Contains(f, "%s") {
			return nil, fmt.Errorf("auth: ldap filter %q has no %%s for the user name", f)
		}
		if _, err := ldap.CompileFilter(expandFilter(f, "user@example.com")); err != nil {
			return nil, fmt.Errorf("auth: ldap filter %q: %w", f, err)
		}
	}
	if cfg.MailAttribute == "" {
		cfg.MailAttribute = "mail"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxIdleConns == 0 {
		cfg.MaxIdleConns = 4
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	return &LDAP{cfg: cfg, url: u, host: host, log: log, sem: make(chan struct{}, cfg.MaxConns), now: time.Now}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// expandFilter replaces each %s of filter with the escaped value (RFC 4515 §3: "*", "(",
// ")", "\", NUL and non-ASCII bytes become \XX). fmt is not used, so that other "%"
// characters in the filter stay as they are.
func expandFilter(filter, value string) string {
	return strings.ReplaceAll(filter, "%s", ldap.EscapeFilter(value))
}

func (l *LDAP) tlsConfig() (*tls.Config, error) {
	l.tlsOnce.Do(func() {
		c := &tls.Config{ServerName: l.host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: l.cfg.InsecureSkipVerify}
		if l.cfg.CAFile != "" {
			pem, err := os.ReadFile(l.cfg.CAFile)
			if err != nil {
				l.tlsErr = fmt.Errorf("ldap ca_file: %w", err)
				return
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				l.tlsErr = fmt.Errorf("ldap ca_file %s: no PEM certificates", l.cfg.CAFile)
				return
			}
			c.RootCAs = pool
		}
		l.tlsConf = c
	})
	return l.tlsConf, l.tlsErr
}

// unavailable wraps err as ErrUnavailable with what failed.
func unavailable(what string, err error) error {
	return fmt.Errorf("auth: ldap %s: %w: %w", what, ErrUnavailable, err)
}

// dial opens a connection (TLS or StartTLS as configured); the deadline of the raw
// connection bounds the TLS handshakes too.
func (l *LDAP) dial(ctx context.Context, deadline time.Time) (*ldapConn, error) {
	var tc *tls.Config
	if l.url.Scheme == "ldaps" || l.cfg.StartTLS {
		var err error
		if tc, err = l.tlsConfig(); err != nil {
			return nil, unavailable("tls", err)
		}
	}
	d := net.Dialer{Deadline: deadline}
	raw, err := d.DialContext(ctx, "tcp", l.url.Host)
	if err != nil {
		return nil, unavailable("dial "+l.url.Host, err)
	}
	raw.SetDeadline(deadline)
	var nc net.Conn = raw
	if l.url.Scheme == "ldaps" {
		t := tls.Client(raw, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, unavailable("tls handshake with "+l.url.Host, err)
		}
		nc = t
	}
	c := ldap.NewConn(nc, l.url.Scheme == "ldaps")
	c.Start()
	c.SetTimeout(l.cfg.Timeout)
	if l.cfg.StartTLS {
		if err := c.StartTLS(tc); err != nil {
			c.Close()
			return nil, unavailable("starttls with "+l.url.Host, err)
		}
	}
	return &ldapConn{raw: raw, c: c}, nil
}

// get returns a pooled connection or a new one, with the attempt's deadline set.
func (l *LDAP) get(ctx context.Context, deadline time.Time) (*ldapConn, error) {
	now := l.now()
	lc, ok := l.idle.Pop(func(lc *ldapConn) bool {
		return !lc.c.IsClosing() && now.Sub(lc.lastUsed) <= l.cfg.IdleTimeout
	}, func(lc *ldapConn) { lc.c.Close() })
	if !ok {
		return l.dial(ctx, deadline)
	}
	lc.raw.SetDeadline(deadline)
	lc.pooled = true
	return lc, nil
}

// put returns a healthy connection to the pool (or closes it).
func (l *LDAP) put(lc *ldapConn, healthy bool) {
	if !healthy || l.cfg.MaxIdleConns < 0 || lc.c.IsClosing() {
		lc.c.Close()
		return
	}
	// No deadline while idle: go-ldap's reader would fail on it and close the
	// connection; IdleTimeout retires it instead.
	lc.raw.SetDeadline(time.Time{})
	lc.lastUsed = l.now()
	if !l.idle.Push(lc, l.cfg.MaxIdleConns) {
		lc.c.Close()
	}
}

// Close closes the pooled connections.
func (l *LDAP) Close() error {
	for _, lc := range l.idle.Drain() {
		lc.c.Close()
	}
	return nil
}

// with runs f on a connection bound as the service account (or anonymously), within
// the attempt's deadline and ctx. f reports whether the connection may be reused.
func (l *LDAP) with(ctx context.Context, f func(lc *ldapConn) (reuse bool, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return unavailable("waiting for a connection", ctx.Err())
	}
	defer func() { <-l.sem }()
	deadline, _ := ctx.Deadline()
	var lc *ldapConn
	var stop func() bool
	for {
		var err error
		if lc, err = l.get(ctx, deadline); err != nil {
			return err
		}
		// go-ldap takes no context: cancellation closes the connection, which fails
		// the request in progress.
		c := lc.c
		stop = context.AfterFunc(ctx, func() { c.Close() })
		err = l.serviceBind(lc)
		if err == nil {
			break
		}
		stop()
		l.put(lc, false)
		if ctx.Err() != nil {
			return unavailable("bind", ctx.Err())
		}
		// A pooled connection the server closed while idle (a restart, its idle
		// timeout) fails at its first request: retry on a fresh connection.
		if lc.pooled && ldap.IsErrorWithCode(err, ldap.ErrorNetwork) {
			continue
		}
		return err
	}
	defer stop()
	reuse, err := f(lc)
	if ctx.Err() != nil {
		reuse = false
		if err == nil || !errors.Is(err, ErrInvalid) {
			err = unavailable("request", ctx.Err())
		}
	}
	l.put(lc, reuse && stop())
	return err
}

// serviceBind binds as the search account, or anonymously (which also resets a pooled
// connection left bound as the previous user, RFC 4513 §5.1.1).
func (l *LDAP) serviceBind(lc *ldapConn) error {
	var err error
	if l.cfg.BindDN != "" {
		err = lc.c.Bind(l.cfg.BindDN, l.cfg.BindPassword)
	} else {
		_, err = lc.c.SimpleBind(&ldap.SimpleBindRequest{AllowEmptyPassword: true})
	}
	if err != nil {
		return unavailable(fmt.Sprintf("service bind as %q", l.cfg.BindDN), err)
	}
	return nil
}

// search finds the single entry matching filter for name.
func (l *LDAP) search(lc *ldapConn, filter, name string, attrs ...string) (*ldap.Entry, error) {
	req := ldap.NewSearchRequest(l.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, int(l.cfg.Timeout/time.Second)+1, false, expandFilter(filter, name), append([]string{l.cfg.MailAttribute}, attrs...), nil)
	res, err := lc.c.Search(req)
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || (err == nil && len(res.Entries) > 1):
		l.log.Warn("auth: ldap filter matches several entries; refusing", "user", name, "filter", filter)
		return nil, fmt.Errorf("%w: %.80q matches several ldap entries", ErrInvalid, name)
	case err != nil:
		return nil, unavailable(fmt.Sprintf("search for %.80q", name), err)
	case len(res.Entries) == 0:
		return nil, fmt.Errorf("%w: %.80q", ErrUnknownUser, name)
	}
	return res.Entries[0], nil
}

// Authenticate implements Authenticator: search the user's entry as the service
// account, then bind as that entry with password. It returns the entry's mail attribute
// (normalised), ErrUnknownUser when no entry matches, ErrInvalid for a wrong password
// and ErrUnavailable when the directory cannot be reached or refuses the service bind.
func (l *LDAP) Authenticate(ctx context.Context, username, password string, _ netip.Addr) (string, error) {
	// An empty password would make the bind "unauthenticated" (RFC 4513 §5.1.2), which
	// many servers answer with success: refuse before any bind.
	if password == "" || len(password) > MaxPasswordLen {
		return "", fmt.Errorf("%w: empty or oversized password", ErrInvalid)
	}
	// Any byte may appear in the name: expandFilter escapes it (a NUL becomes \00, so
	// the server cannot truncate the value there).
	if username == "" || len(username) > address.MaxLen {
		return "", fmt.Errorf("%w: bad user name %.80q", ErrUnknownUser, username)
	}
	var addr string
	err := l.with(ctx, func(lc *ldapConn) (bool, error) {
		e, err := l.search(lc, l.cfg.Filter, username)
		if err != nil {
			return !errors.Is(err, ErrUnavailable), err
		}
		if err := lc.c.Bind(e.DN, password); err != nil {
			// 49 invalidCredentials (AD adds the reason: bad password, disabled,
			// expired, locked); 48 and 53 are what servers answer for accounts that
			// may not bind at all.
			if ldap.IsErrorAnyOf(err, ldap.LDAPResultInvalidCredentials, ldap.LDAPResultInappropriateAuthentication, ldap.LDAPResultUnwillingToPerform) {
				return true, fmt.Errorf("%w: ldap bind as %q: %v", ErrInvalid, e.DN, err)
			}
			return false, unavailable(fmt.Sprintf("bind as %q", e.DN), err)
		}
		mail := e.GetAttributeValue(l.cfg.MailAttribute)
		if mail == "" {
			mail = username
		}
		a, err := address.Normalize(mail)
		if err != nil {
			l.log.Warn("auth: ldap entry has no usable mail address", "dn", e.DN, "attribute", l.cfg.MailAttribute, "err", err)
			return true, fmt.Errorf("%w: %s has no usable %s: %v", ErrInvalid, e.DN, l.cfg.MailAttribute, err)
		}
		addr = a
		return true, nil
	})
	if err != nil {
		return "", err
	}
	return addr, nil
}

// Exists reports whether the directory has an entry for address (RecipientFilter).
func (l *LDAP) Exists(ctx context.Context, addr string) (bool, error) {
	if addr == "" || len(addr) > address.MaxLen {
		return false, nil
	}
	found := false
	err := l.with(ctx, func(lc *ldapConn) (bool, error) {
		_, err := l.search(lc, l.cfg.RecipientFilter, addr)
		switch {
		case errors.Is(err, ErrUnknownUser):
			return true, nil
		case errors.Is(err, ErrInvalid): // several entries: the address exists
			found = true
			return true, nil
		case err != nil:
			return false, err
		}
		found = true
		return true, nil
	})
	return found, err
}

// Attributes returns the values of attrs (and of the mail attribute) in the entry that
// RecipientFilter finds for addr, keyed by the names asked for: what the multi-node
// directory reads (mailHost, quota, aliases) over the same pooled connections as
// logins. It fails with ErrUnknownUser when no entry matches, with ErrInvalid when
// several do, and with ErrUnavailable when the directory cannot be asked.
func (l *LDAP) Attributes(ctx context.Context, addr string, attrs ...string) (map[string][]string, error) {
	if addr == "" || len(addr) > address.MaxLen {
		return nil, fmt.Errorf("%w: bad address %.80q", ErrUnknownUser, addr)
	}
	var out map[string][]string
	err := l.with(ctx, func(lc *ldapConn) (bool, error) {
		e, err := l.search(lc, l.cfg.RecipientFilter, addr, attrs...)
		if err != nil {
			return !errors.Is(err, ErrUnavailable), err
		}
		out = make(map[string][]string, len(attrs)+1)
		for _, a := range append([]string{l.cfg.MailAttribute}, attrs...) {
			if v := e.GetAttributeValues(a); len(v) > 0 {
				out[a] = v
			}
		}
		return true, nil
	})
	return out, err
}

// stampAttrs are what Stamp reads of a user's entry, in groups from the most precise:
// the stored password itself, where the service account may read it (an ACL "by dn=...
// read" on userPassword); the time the password last changed (pwdChangedTime, set by
// OpenLDAP's ppolicy overlay, draft-behera-ldap-password-policy-10 §5.3.2; pwdLastSet
// in Active Directory); else what changes with any modification of the entry: entryCSN
// (OpenLDAP, microseconds and a change count), uSNChanged (Active Directory) and
// modifyTimestamp (RFC 4512 §3.4.2, whole seconds). The last group also ends a web
// session when anything else of the entry changes (a new phone number): acceptable,
// the user logs in again. Operational attributes are returned only when asked for by
// name (RFC 4511 §4.5.1.8), as here.
var stampAttrs = [][]string{{"userPassword"}, {"pwdChangedTime", "pwdLastSet"}, {"entryCSN", "uSNChanged", "modifyTimestamp"}}

// Stamp returns a user's credential stamp: a digest that changes when their password
// does (see stampAttrs), so that the web page ends the sessions opened before. It fails
// with ErrUnknownUser when no entry matches addr (RecipientFilter). A directory that
// shows the service account none of the attributes gives a constant stamp, and a
// warning is logged once: password changes then end no session.
func (l *LDAP) Stamp(ctx context.Context, addr string) (string, error) {
	if addr == "" || len(addr) > address.MaxLen {
		return "", fmt.Errorf("%w: bad address %.80q", ErrUnknownUser, addr)
	}
	var attrs []string
	for _, g := range stampAttrs {
		attrs = append(attrs, g...)
	}
	var stamp string
	err := l.with(ctx, func(lc *ldapConn) (bool, error) {
		e, err := l.search(lc, l.cfg.RecipientFilter, addr, attrs...)
		if err != nil {
			return !errors.Is(err, ErrUnavailable), err
		}
		stamp = entryStamp(e)
		return true, nil
	})
	if err == nil {
		l.logStampKind(stamp, addr)
	}
	return stamp, err
}

// logStampKind says, the first time Stamp finds each group of stampAttrs, which one
// the web sessions are checked against: an operator sees at the first session check
// (no entry is read at start) whether a directory meant to show pwdChangedTime does.
// The last group is a warning, with what to change: OpenLDAP's ppolicy overlay writes
// pwdFailureTime (and lastbind authTimestamp) on binds, which moves entryCSN and
// modifyTimestamp, so a mistyped password, even a stranger's, ends the user's sessions.
func (l *LDAP) logStampKind(stamp, user string) {
	if stamp == "ldap" {
		l.stampWarn.Do(func() {
			l.log.Warn("auth: the ldap directory shows the service account none of userPassword, pwdChangedTime, pwdLastSet, entryCSN, uSNChanged, modifyTimestamp: a password change will not end the user's web sessions", "user", user)
		})
		return
	}
	i := int(stamp[len("ldap")] - '0')
	if i < 0 || i >= len(l.stampSeen) || l.stampSeen[i].Swap(true) {
		return
	}
	switch i {
	case 0:
		l.log.Info("auth: ldap web sessions are checked against the stored password (userPassword, readable by the service account)", "user", user)
	case 1:
		l.log.Info("auth: ldap web sessions are checked against the password's change time (pwdChangedTime or pwdLastSet)", "user", user)
	default:
		l.log.Warn("auth: ldap web sessions are checked against entryCSN/uSNChanged/modifyTimestamp, which any write to the entry moves (a ppolicy failure counter, a lastbind time): such a write ends the user's web sessions; load ppolicy and let the service account read pwdChangedTime (docs/operations.md)", "user", user)
	}
}

// entryStamp digests the first group of stampAttrs that e has ("ldapN:" and the
// digest, N the group's index); "ldap" when none.
func entryStamp(e *ldap.Entry) string {
	for i, g := range stampAttrs {
		h := sha256.New()
		found := false
		for _, a := range g {
			for _, v := range e.GetEqualFoldRawAttributeValues(a) {
				found = true
				fmt.Fprintf(h, "%s\x00%d\x00%s\x00", a, len(v), v)
			}
		}
		if found {
			return fmt.Sprintf("ldap%d:%x", i, h.Sum(nil)[:12])
		}
	}
	return "ldap"
}

// MailAttribute is the attribute that holds a user's canonical address.
func (l *LDAP) MailAttribute() string { return l.cfg.MailAttribute }

// Check connects and binds as the service account, so that `portcullis serve` can
// report a misconfiguration at start.
func (l *LDAP) Check(ctx context.Context) error {
	return l.with(ctx, func(*ldapConn) (bool, error) { return true, nil })
}
