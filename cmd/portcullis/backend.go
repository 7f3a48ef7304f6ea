package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/directory"
)

// evicter is what the tenancy watch needs of a mailbox server (*imapd.Server,
// *pop3d.Server, *managesieve.Server).
type evicter interface {
	LoggedIn() []string
	Evict(user string, before time.Time, text string) int
}

// evicters are a node's mailbox servers, watched as one: a user logged in to any, and
// their sessions closed in each.
type evicters []evicter

func (es evicters) LoggedIn() []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range es {
		for _, u := range e.LoggedIn() {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

func (es evicters) Evict(user string, before time.Time, text string) int {
	n := 0
	for _, e := range es {
		n += e.Evict(user, before, text)
	}
	return n
}

// tenancyInterval is how often a back-end checks where its logged-in users live.
const tenancyInterval = time.Second

// tenancy closes the IMAP, POP3 and ManageSieve sessions of users who no longer live on
// this back-end (mode: backend): being moved (state moving) or moved (another mail
// host), so that their clients reconnect through the proxy, which sends them to the new
// back-end (or answers [UNAVAILABLE] while the move lasts). Each server ends a session
// with its protocol's temporary failure: IMAP's BYE [UNAVAILABLE] (RFC 5530), POP3's
// -ERR [SYS/TEMP] (RFC 3206), ManageSieve's BYE (TRYLATER) (RFC 5804). A back-end learns it by asking the
// directory (through its cache) about each logged-in user every tenancyInterval: a
// change is acted on within directory.cache_ttl plus that interval.
//
// Which sessions are closed: those that logged in before every node could see the
// change, that is before the directory's User.Moved (the start of the move) plus the
// cache TTL, in this node's clock (User.MovedLocal); when the directory gives no time
// (LDAP), before this back-end first saw it. A session that logs in later is left open: it is the copy of portcullis user
// move, which reads the mailbox while it is moving and removes it after the flip, and
// which starts only once the change is visible everywhere.
type tenancy struct {
	dir  directory.Directory
	this string
	def  string // the directory's default host: the host of users without one
	ttl  time.Duration
	srv  evicter
	log  *slog.Logger
	now  func() time.Time

	// firstSeen is when a user without User.Moved was first seen gone.
	firstSeen map[string]time.Time
}

// watchTenancy starts the watch on srv when the mode is backend; the returned function
// stops it.
func watchTenancy(cfg *config.Config, srv evicter, logger *slog.Logger) (func(), error) {
	if cfg.Mode != config.ModeBackend {
		return func() {}, nil
	}
	var conn *auth.LDAP
	if cfg.Directory.LDAP != nil {
		var err error
		if conn, err = auth.NewLDAP(*cfg.Auth.LDAP, logger); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	dir, closeDir, err := directory.Open(ctx, cfg.Directory, directory.Deps{LDAP: conn})
	if err != nil {
		cancel()
		if conn != nil {
			conn.Close()
		}
		return nil, err
	}
	ttl := cfg.Directory.CacheTTL
	if ttl == 0 {
		ttl = directory.DefaultCacheTTL
	}
	t := &tenancy{dir: dir, this: cfg.Directory.ThisHost, def: cfg.Directory.DefaultHost, ttl: max(ttl, 0),
		srv: srv, log: logger, now: time.Now, firstSeen: map[string]time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(tenancyInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				t.check(ctx)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		closeDir.Close()
		if conn != nil {
			conn.Close()
		}
	}, nil
}

// check looks up every logged-in user once and closes the sessions of those gone.
func (t *tenancy) check(ctx context.Context) {
	now := t.now()
	for _, user := range t.srv.LoggedIn() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		u, err := t.dir.Lookup(lctx, user)
		cancel()
		if err != nil {
			// Unknown to the directory (a user of this node's own database, such as the
			// postmaster) or the directory cannot say: the sessions stay, as the mailbox.
			continue
		}
		host := u.MailHost
		if host == directory.HostHere {
			host = t.def
		}
		moving := u.State == directory.StateMoving
		here := !moving && (host == t.this || host == "")
		if here {
			delete(t.firstSeen, user)
			continue
		}
		// MovedLocal, not Moved: the sessions' login times are this node's clock, Moved
		// is PostgreSQL's, and a skew over the TTL plus a second between them would close
		// the move's own session (this node behind) or keep the user's old ones (ahead).
		cut := u.MovedLocal.Add(t.ttl)
		if u.MovedLocal.IsZero() {
			if _, ok := t.firstSeen[user]; !ok {
				t.firstSeen[user] = now
			}
			cut = t.firstSeen[user]
		}
		if n := t.srv.Evict(user, cut, "mailbox moving to another server, please reconnect"); n > 0 {
			t.log.Info("closed the sessions of a user who no longer lives here", "user", user, "sessions", n,
				"moving", moving, "mail_host", u.MailHost)
		}
	}
	// Forget the users no longer logged in: only a logged-in user can be gone again.
	if len(t.firstSeen) > 0 {
		in := map[string]bool{}
		for _, u := range t.srv.LoggedIn() {
			in[u] = true
		}
		for u := range t.firstSeen {
			if !in[u] {
				delete(t.firstSeen, u)
			}
		}
	}
}

// errNotHere answers, at an LMTP RCPT of a back-end, a user whose mailbox is elsewhere
// or moving: a front-end whose directory cache is late keeps the message and retries
// (a 4xx), instead of this store taking mail it must not hold.
var errNotHere = errors.New("the user's mailbox is not on this back-end (moving, or another mail host)")

// backendExists is the recipient check of a node with a store and a shared directory
// (mode: backend, or standalone with directory.postgres or ldap): a user of the
// directory whose mail host is this node (directory.this_host; without it, any
// directory user), or else a user of the local database (the postmaster). In a back-end,
// a directory user living elsewhere or moving is a temporary error (a standalone node
// asks its local users then). Without a shared directory, and in a front-end, local
// stays. The returned function closes the directory.
func backendExists(ctx context.Context, cfg *config.Config, users *auth.Service, local func(context.Context, string) (bool, error)) (func(context.Context, string) (bool, error), func(), error) {
	shared := cfg.Directory.Postgres != "" || cfg.Directory.LDAP != nil
	if !shared || (cfg.Mode != config.ModeBackend && cfg.Mode != config.ModeStandalone) {
		return local, func() {}, nil
	}
	dir, closeDir, err := directory.Open(ctx, cfg.Directory, directory.Deps{LDAP: users.LDAP})
	if err != nil {
		return nil, nil, err
	}
	exists := func(ctx context.Context, addr string) (bool, error) {
		u, err := dir.Lookup(ctx, addr)
		switch {
		case errors.Is(err, directory.ErrNotFound):
			return local(ctx, addr)
		case err != nil:
			return false, err
		}
		host := u.MailHost
		if host == directory.HostHere {
			host = cfg.Directory.DefaultHost
		}
		if u.State == directory.StateMoving || cfg.Directory.ThisHost != "" && host != "" && host != cfg.Directory.ThisHost {
			if cfg.Mode != config.ModeBackend {
				return local(ctx, addr) // a standalone node decides as before
			}
			return false, fmt.Errorf("%s: %w", u.Address, errNotHere)
		}
		return true, nil
	}
	return exists, func() { closeDir.Close() }, nil
}
