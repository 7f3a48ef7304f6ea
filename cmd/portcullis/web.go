package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/statedb"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/quarantine"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/web"
)

// mountWeb puts the web page (quarantine, sender lists, charts) on mux at /, and starts
// the quarantine's pruning and the digests. The returned function stops them.
//
// dlog is the decision log (nil: none): the page's decision pages read it, and the
// quarantine's releases and deletions become its outcomes.
func mountWeb(cfg *config.Config, mux *http.ServeMux, sp *spool.Spool, users *auth.Service, router *route.Router, lists *quarantine.Lists, listed *rcptLists, dlog *decisionlog.Log, policies map[string]policy.Policy, logger *slog.Logger) (func(), error) {
	qcfg := cfg.Quarantine
	qcfg.Logger = logger
	qcfg.Ham = releaseTrainer(cfg, policies, logger)
	var pageLog web.DecisionLog // stays a nil interface without a log
	if dlog != nil {
		pageLog = dlog
		qcfg.Decided = func(id, rcpt, action, detail string) {
			o := decisionlog.Outcome{QueueID: id, Recipient: rcpt, Time: time.Now(), Reason: action + " from quarantine " + detail}
			switch action {
			case "released":
				o.Outcome = decisionlog.OutcomeReleased
			default:
				o.Outcome = decisionlog.OutcomeDeleted
			}
			dlog.SetOutcome(o)
		}
	}
	area, err := quarantine.New(qcfg, sp)
	if err != nil {
		return nil, err
	}
	key, err := oldTicketKey(filepath.Join(cfg.DataDir, "web.key"))
	if err != nil {
		return nil, err
	}
	authn, creds, closeDir, err := webUsers(cfg, users, router)
	if err != nil {
		return nil, err
	}
	state, err := web.OpenState(context.Background(), stateConfig(cfg, "web.db"))
	if err != nil {
		closeDir()
		return nil, err
	}
	wcfg := cfg.Web
	wcfg.Logger = logger
	if wcfg.SecretFile == "" {
		wcfg.SecretFile = filepath.Join(cfg.DataDir, "web.secret")
	}
	if wcfg.URL == "" {
		wcfg.URL = defaultWebURL(cfg)
	}
	page, err := web.New(wcfg, web.Deps{Auth: authn, Owner: router, Addresses: router, Quarantine: area, Lists: lists,
		Log: pageLog, LegacyKey: key, State: state, Credentials: creds, ListOwners: listed})
	if err != nil {
		state.Close()
		closeDir()
		return nil, err
	}
	if key != nil {
		// Moved into the secret file (or refused): the old file keeps no copy of it.
		if err := os.Remove(filepath.Join(cfg.DataDir, "web.key")); err != nil {
			logger.Warn("web: removing the old web.key failed", "err", err.Error())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	mux.Handle("/", page)
	from := qcfg.DigestFrom
	if from == "" {
		from = cfg.Postmaster
	}
	done := make(chan struct{}, 2)
	go func() { area.Run(ctx); done <- struct{}{} }()
	go func() {
		page.RunDigests(ctx, web.DigestConfig{Lists: lists, From: from, Enqueue: sp.Enqueue, Every: time.Hour})
		done <- struct{}{}
	}()
	return func() {
		cancel()
		<-done
		<-done
		state.Close()
		closeDir()
	}, nil
}

// releaseTrainer is the quarantine's Ham when the rules use the Bayes filter: a
// released message trains the global Bayes database (the one Junk moves train) as ham.
// Without a bayes policy it is nil: nothing is opened or learned.
func releaseTrainer(cfg *config.Config, policies map[string]policy.Policy, logger *slog.Logger) func(context.Context, string, io.Reader) error {
	on := false
	for _, p := range policies {
		if _, ok := p.(*bayes.Policy); ok {
			on = true
		}
	}
	if !on {
		return nil
	}
	train := junkTrainer(cfg, logger)
	return func(ctx context.Context, rcpt string, msg io.Reader) error { return train(ctx, rcpt, msg, false) }
}

// defaultWebURL is the page's address for the digest's links when web.url is unset:
// https beyond loopback, and the server's hostname when the listener names no host
// (":8025", "0.0.0.0:8025"), which would make a link no mail client can open.
func defaultWebURL(cfg *config.Config) string {
	scheme := "http"
	if len(exposedHTTP(cfg)) > 0 {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil {
		return scheme + "://" + cfg.HTTP.Addr
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = cfg.Hostname
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// webTLS wraps the HTTP listener in TLS with the SMTP server's certificate when it listens
// beyond loopback: the page takes passwords.
func webTLS(cfg *config.Config, priv *privileges, ln net.Listener) (net.Listener, error) {
	if len(exposedHTTP(cfg)) == 0 {
		return ln, nil
	}
	tc, err := priv.tlsConfig(cfg.SMTP)
	if err != nil {
		return nil, fmt.Errorf("http: the page listens beyond loopback and needs smtp.tls: %w", err)
	}
	if tc == nil {
		return nil, errors.New("http: the page listens beyond loopback and needs a certificate (smtp.tls)")
	}
	tc = tc.Clone()
	tc.NextProtos = []string{"h2", "http/1.1"}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	return tls.NewListener(ln, tc), nil
}

// exposedHTTP is exposed for the HTTP address alone.
func exposedHTTP(cfg *config.Config) []string {
	c := config.Config{}
	c.HTTP.Addr = cfg.HTTP.Addr
	return exposed(&c)
}

// oldTicketKey reads the key an older version kept in DATA/web.key, which the page's
// secret file then adopts as an old key (its links work until they expire); nil when
// there is none.
func oldTicketKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("web key %s: %w", path, err)
	case len(b) < 32:
		return nil, nil
	}
	return b, nil
}

// stateConfig is where the page's and the quarantine's state lives: the SQLite file
// DATA/file, or the multi-node mode's shared PostgreSQL database (directory.postgres),
// so that every node sees the same sessions, tickets and sender lists.
func stateConfig(cfg *config.Config, file string) statedb.Config {
	return statedb.Config{Path: filepath.Join(cfg.DataDir, file), Postgres: cfg.Directory.Postgres}
}

// webUsers are the page's login and credential stamps: the local users (and LDAP), or,
// with the directory in PostgreSQL, the shared directory's password hashes (auth's
// hashing limits, verify cache and throttling around them), so that every node checks
// the same passwords and a session made on one node is valid on the others. The
// returned function closes the directory.
func webUsers(cfg *config.Config, users *auth.Service, router *route.Router) (web.Authenticator, web.Credentials, func(), error) {
	if cfg.Directory.Postgres == "" {
		return users.Auth, credentialStamps{users: users}, func() {}, nil
	}
	dir, closer, err := directory.Open(context.Background(), cfg.Directory, directory.Deps{Aliases: router.Addresses})
	if err != nil {
		return nil, nil, nil, err
	}
	hashes := directory.Hashes(dir)
	th, err := auth.NewThrottle(users.DB.WithHashes(hashes), cfg.Auth.Throttle)
	if err != nil {
		closer.Close()
		return nil, nil, nil, err
	}
	return th, credentialStamps{users: users, hashes: hashes}, func() { closer.Close() }, nil
}

// credentialStamps are the users' credential stamps for the page (web.Credentials): a
// digest of the stored password hash of a local user (or of the shared directory's
// hash when hashes is set), which a password change changes; for an LDAP user, a digest
// of what the directory shows of the password's last change (auth.LDAP.Stamp: the
// hash if readable, pwdChangedTime, else entryCSN/modifyTimestamp, which any change of
// the entry changes).
type credentialStamps struct {
	users  *auth.Service
	hashes auth.HashLookup // nil: the local user database
}

func stampOf(hash string) string {
	sum := sha256.Sum256([]byte(hash))
	return hex.EncodeToString(sum[:8])
}

func (c credentialStamps) Stamp(ctx context.Context, user string) (string, error) {
	if c.hashes != nil {
		h, err := c.hashes(ctx, user)
		switch {
		case err != nil:
			return "", err
		case h == "":
			return "", fmt.Errorf("%w: %s", web.ErrNoUser, user)
		}
		return stampOf(h), nil
	}
	_, h, err := c.users.DB.PasswordHash(ctx, user)
	if err == nil {
		return stampOf(h), nil
	}
	if !errors.Is(err, auth.ErrUnknownUser) {
		return "", err
	}
	if c.users.LDAP != nil {
		st, err := c.users.LDAP.Stamp(ctx, user)
		switch {
		case err == nil:
			return st, nil
		case !errors.Is(err, auth.ErrUnknownUser):
			return "", err
		}
	}
	return "", fmt.Errorf("%w: %s", web.ErrNoUser, user)
}

// openSenderLists opens the users' sender lists (DATA/quarantine.db, or the shared
// PostgreSQL database), which the web page writes and the rules read
// (rcpt.allows_sender, rcpt.blocks_sender).
func openSenderLists(cfg *config.Config) (*quarantine.Lists, *rcptLists, error) {
	lists, err := quarantine.OpenLists(context.Background(), stateConfig(cfg, "quarantine.db"))
	if err != nil {
		return nil, nil, err
	}
	return lists, &rcptLists{lists: lists, delim: cfg.Routing.RecipientDelimiter}, nil
}

// rcptLists answers the engine's sender-list question for a recipient: the lists of the
// users it delivers to (through aliases), a block winning over an allow. router is set
// once the router exists, before the first message.
type rcptLists struct {
	lists  *quarantine.Lists
	router *route.Router
	delim  string
}

func (r *rcptLists) Listed(ctx context.Context, rcpt, sender string) (string, error) {
	owners, err := r.ListOwners(ctx, rcpt)
	if err != nil {
		return "", err
	}
	kind := ""
	for _, o := range owners {
		k, err := r.lists.Lookup(ctx, o, sender)
		if err != nil {
			return "", err
		}
		if k == quarantine.Block {
			return k, nil
		}
		if k != "" {
			kind = k
		}
	}
	return kind, nil
}

// ListOwners names the users whose lists rcpt's rules read (web.ListOwners): the
// canonical users it delivers to, through aliases, without extensions. The page stores
// an admin's allow or block on another user's message under these names.
func (r *rcptLists) ListOwners(ctx context.Context, rcpt string) ([]string, error) {
	finals := []string{rcpt}
	if r.router != nil {
		var err error
		if finals, err = r.router.Expand(ctx, rcpt); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, f := range finals {
		if u := r.user(f); !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// user is the list owner of a final recipient: the user name an Authenticator returns
// for it (address.Normalize: NFC lower case, the domain's A-labels), without its
// extension. The page keys the lists by that name, so a recipient written otherwise
// (upper case, a U-label domain) still finds them.
func (r *rcptLists) user(addr string) string {
	local, domain, ok := address.Split(addr)
	if !ok {
		return strings.ToLower(addr)
	}
	u := address.StripExtension(local, r.delim) + "@" + domain
	if n, err := address.Normalize(u); err == nil {
		return n
	}
	return strings.ToLower(u)
}
