package directory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/portcullis-mail/portcullis/auth"
)

// User is what the directory knows about one mailbox owner.
type User struct {
	// Address is the canonical address (lower case, as address.Normalize gives it).
	Address string
	// PasswordHash is the stored hash (argon2id PHC string or bcrypt), empty when the
	// directory verifies passwords itself (LDAP binds).
	PasswordHash string
	// Quota is the storage limit in bytes; 0 means the store's default.
	Quota int64
	// MailHost names the back-end that holds the mailbox; empty means this node
	// (HostHere).
	MailHost string
	// State is empty in normal operation; StateMoving while the mailbox is copied to
	// another back-end.
	State string
	// Aliases are the other addresses that deliver to this user.
	Aliases []string
	// Changed is when the entry last changed, as the directory's clock tells; zero when
	// the directory does not say (local, LDAP).
	Changed time.Time
	// Moved is when the user last stopped living on their previous mail host: when the
	// state became moving, or, without a move, when the mail host changed. The old
	// back-end closes the sessions opened before it (plus the cache TTL); zero when the
	// directory does not say. It is in the directory's clock (PostgreSQL's).
	Moved time.Time
	// MovedLocal is Moved in the clock of the process that looked the user up: its
	// clock when the answer arrived minus the directory's own now() − moved. A back-end
	// compares its sessions' login times (its clock) with it, so that a skew between its
	// clock and PostgreSQL's does not move the cut (a back-end behind by more than the
	// cache TTL would otherwise close the move's own session, one ahead keep the user's
	// old ones). Zero when Moved is.
	MovedLocal time.Time
}

// HostHere is the MailHost of a user on a single node: the mailbox is in this process.
const HostHere = ""

// StateMoving marks a user whose mailbox is being copied to another back-end.
const StateMoving = "moving"

// Directory looks users up. Lookup fails with an error matching ErrNotFound for an
// address without a user; any other error means the directory could not be asked
// (callers answer with a temporary failure, never as if the user did not exist).
type Directory interface {
	Lookup(ctx context.Context, address string) (User, error)
}

// ErrNotFound is returned (wrapped) by Lookup for an address that has no user.
var ErrNotFound = errors.New("directory: no such user")

// Config is the directory: local (the default, neither postgres nor ldap set), a
// PostgreSQL database, or the LDAP directory of auth.ldap.
type Config struct {
	// Postgres is a connection string (postgres://user@host:port/db?sslmode=...): the
	// shared directory of a multi-node installation. Its tables are created on open.
	// The same database then keeps the web page's sessions and used digest links and
	// the quarantine's sender lists and digest preferences (instead of DATA/web.db and
	// DATA/quarantine.db), and the decision log unless stats.postgres or stats.path is
	// set, so that every node shares them.
	Postgres string `yaml:"postgres"`
	// LDAP reads users from the directory that auth.ldap authenticates against, with
	// the mail host, quota and aliases from the attributes named here.
	LDAP *LDAPConfig `yaml:"ldap"`
	// CacheTTL is how long an answer is remembered: a change in the directory (a user
	// moved to another mail host) is seen within this time (default 5s; negative: no
	// cache).
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// CacheEntries bounds the cache (default 100000).
	CacheEntries int `yaml:"cache_entries"`
	// Hosts are the mail hosts (back-ends) by the name users' entries give: where
	// front-ends deliver by LMTP and portcullis user move reads mailboxes. Empty: a mail
	// host's name is its DNS name, with LMTP on port 24, IMAPS on 993 and POP3S on 995;
	// listed: only the hosts listed are known.
	Hosts map[string]Host `yaml:"hosts"`
	// DefaultHost is the mail host of users whose entry names none.
	DefaultHost string `yaml:"default_host"`
	// ThisHost is the name of this node among the mail hosts (mode: backend): the
	// sessions of a user whose mail host becomes another, or who is being moved, are
	// closed, so that the client reconnects through the proxy to the new one. It is
	// proxy.local_host too (proxy_maybe's name of this node): set either.
	ThisHost string `yaml:"this_host"`
}

// DefaultCacheTTL is the default of Config.CacheTTL.
const DefaultCacheTTL = 5 * time.Second

// Deps are what Open builds the local and LDAP directories on.
type Deps struct {
	// Users is the local user database (the local directory; required without
	// postgres and ldap).
	Users *auth.DB
	// LDAP is auth's directory connection (required with Config.LDAP).
	LDAP *auth.LDAP
	// Quota is the store's quota, reported for local users.
	Quota int64
	// Aliases, when set, lists the addresses that deliver to a local user (the
	// router's Addresses).
	Aliases func(ctx context.Context, user string) ([]string, error)
}

// Open builds the directory cfg selects, behind a Cache unless CacheTTL is negative.
// Close releases the PostgreSQL pool (a no-op for the others).
func Open(ctx context.Context, cfg Config, deps Deps) (Directory, io.Closer, error) {
	if cfg.Postgres != "" && cfg.LDAP != nil {
		return nil, nil, errors.New("directory: both postgres and ldap are set; choose one")
	}
	var d Directory
	var closer io.Closer = nopCloser{}
	switch {
	case cfg.Postgres != "":
		p, err := OpenPostgres(ctx, cfg.Postgres)
		if err != nil {
			return nil, nil, err
		}
		d, closer = p, p
	case cfg.LDAP != nil:
		if deps.LDAP == nil {
			return nil, nil, errors.New("directory: ldap needs auth.ldap (the connection it reads through)")
		}
		l, err := NewLDAP(*cfg.LDAP, deps.LDAP)
		if err != nil {
			return nil, nil, err
		}
		d = l
	default:
		if deps.Users == nil {
			return nil, nil, errors.New("directory: no user database for the local directory")
		}
		d = &Local{Users: deps.Users, LDAP: deps.LDAP, Quota: deps.Quota, Aliases: deps.Aliases}
	}
	if cfg.CacheTTL < 0 {
		return d, closer, nil
	}
	ttl := cfg.CacheTTL
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	return NewCache(d, ttl, cfg.CacheEntries), closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func notFound(addr string) error { return fmt.Errorf("%w: %.80q", ErrNotFound, addr) }

// Hashes is the password hash lookup of d, for auth.DB.WithHashes: the proxy of a
// multi-node installation then verifies passwords against the hashes in the shared
// directory, with auth's hashing limits, verify cache and (around it) throttling. A user
// the directory does not have has no hash; a directory that cannot be asked is
// auth.ErrUnavailable.
func Hashes(d Directory) auth.HashLookup {
	return func(ctx context.Context, addr string) (string, error) {
		u, err := d.Lookup(ctx, addr)
		switch {
		case errors.Is(err, ErrNotFound):
			return "", nil
		case err != nil:
			return "", fmt.Errorf("%w: %w", auth.ErrUnavailable, err)
		}
		return u.PasswordHash, nil
	}
}
