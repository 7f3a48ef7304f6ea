package auth

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/internal/private"
)

// DBConfig configures the local user database.
type DBConfig struct {
	// Path is the SQLite file (default DATA/users.db, DefaultDBPath).
	Path string `yaml:"path"`
	// Argon2 are the cost parameters of new hashes (defaults: DefaultArgon2Params).
	Argon2 Argon2Params `yaml:"argon2"`
	// MaxConcurrentHashes bounds how many password hashes run at once, so that a burst
	// of logins cannot allocate Argon2.Memory each without limit (default: the
	// number of CPUs, at least 2). Others wait, within their context's deadline.
	MaxConcurrentHashes int `yaml:"max_concurrent_hashes"`
	// DefaultDomain, when set, is appended to a login name without "@" ("alice" logs in
	// as alice@DefaultDomain).
	DefaultDomain string `yaml:"default_domain"`
	// VerifyCacheTTL is how long a successful login is remembered, so that clients that
	// log in again and again (IMAP clients opening several connections, POP3 pollers,
	// SMTP submission) do not cost a 64 MiB hash each time (default 1h, Dovecot's
	// auth_cache_ttl; negative: off). The entry is an HMAC-SHA256, under a random key
	// made at start and never stored, of (address, stored hash, password), never the
	// password: a password changed or a user deleted, even by `portcullis user` in
	// another process, misses at once, because every login still reads the stored hash.
	// Failures are never cached. The trade-off: while cached, a password is held in a
	// form cheap to brute-force by whoever can read the server's memory.
	VerifyCacheTTL time.Duration `yaml:"verify_cache_ttl"`
	// VerifyCacheEntries bounds the cache (default 100000 entries, about 8 MB).
	VerifyCacheEntries int `yaml:"verify_cache_entries"`
	// Logger for hash upgrades and database errors (nil: slog.Default()).
	Logger *slog.Logger `yaml:"-"`
}

// DefaultDBPath is the user database in a data directory.
func DefaultDBPath(dataDir string) string { return filepath.Join(dataDir, "users.db") }

// ErrUnknownUser is returned (and matches ErrInvalid) when the user does not exist.
// Servers must not tell clients the difference; Chain uses it to try the next backend.
var ErrUnknownUser = fmt.Errorf("%w: unknown user", ErrInvalid)

// ErrUserExists is returned by Add for an address that already has an account.
var ErrUserExists = errors.New("auth: user already exists")

// DB is the local user database: addresses and argon2id password hashes in SQLite, safe
// for concurrent use by goroutines and by other processes on the same file (a
// `portcullis user` command beside a running server): WAL journal, a busy timeout and
// immediate write transactions.
type DB struct {
	db     *sql.DB
	params Argon2Params
	domain string
	log    *slog.Logger
	sem    chan struct{}

	dummyOnce sync.Once
	dummy     string // a hash with the current parameters, verified for unknown users

	cache *verifyCache // nil: off

	verifyHook func() // tests: called on every password verification
}

// User is one row of List.
type User struct {
	Address string
	Scheme  string // argon2id, argon2i or bcrypt
	Created time.Time
	Updated time.Time
}

const schema = `
CREATE TABLE IF NOT EXISTS users (
	address  TEXT PRIMARY KEY,
	password TEXT NOT NULL,
	created  INTEGER NOT NULL,
	updated  INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
`

// OpenDB opens (creating if needed) the user database at path with default settings.
func OpenDB(path string) (*DB, error) { return OpenDBConfig(DBConfig{Path: path}) }

// OpenDBConfig opens (creating if needed) the user database described by cfg.
func OpenDBConfig(cfg DBConfig) (*DB, error) {
	if cfg.Path == "" {
		return nil, errors.New("auth: user database path is empty")
	}
	p := cfg.Argon2.withDefaults()
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	domain := ""
	if cfg.DefaultDomain != "" {
		var err error
		if domain, err = address.NormalizeDomain(cfg.DefaultDomain); err != nil {
			return nil, fmt.Errorf("auth: default_domain %q: %w", cfg.DefaultDomain, err)
		}
	}
	n := cfg.MaxConcurrentHashes
	if n <= 0 {
		n = max(runtime.NumCPU(), 2)
	}
	// The file holds password hashes: create it (and thereby its -wal and -shm files,
	// which SQLite gives the database's mode) readable by the owner only.
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("auth: user database directory: %w", err)
	}
	if err := private.DB(cfg.Path); err != nil {
		return nil, fmt.Errorf("auth: user database: %w", err)
	}
	dsn := private.DSN(cfg.Path,
		"_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_txlock=immediate")
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("auth: open user database %s: %w", cfg.Path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sdb.ExecContext(ctx, schema); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("auth: user database %s: %w", cfg.Path, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &DB{db: sdb, params: p, domain: domain, log: log, sem: make(chan struct{}, n)}
	switch ttl := cfg.VerifyCacheTTL; {
	case ttl == 0:
		d.cache = newVerifyCache(DefaultVerifyCacheTTL, cfg.VerifyCacheEntries)
	case ttl > 0:
		d.cache = newVerifyCache(ttl, cfg.VerifyCacheEntries)
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// canonical normalises a login name, adding the default domain to a bare local part.
func (d *DB) canonical(name string) (string, error) {
	if d.domain != "" && !strings.Contains(name, "@") {
		name += "@" + d.domain
	}
	return address.Normalize(name)
}

// acquire takes a hashing slot, waiting at most until ctx is done.
func (d *DB) acquire(ctx context.Context) error {
	select {
	case d.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("auth: waiting for a password hashing slot: %w: %w", ErrUnavailable, ctx.Err())
	}
}

func (d *DB) release() { <-d.sem }

func (d *DB) hash(ctx context.Context, password string) (string, error) {
	if err := checkPassword(password); err != nil {
		return "", err
	}
	if err := d.acquire(ctx); err != nil {
		return "", err
	}
	defer d.release()
	return HashPassword(password, d.params)
}

// checkPassword refuses passwords that cannot be typed in every protocol.
func checkPassword(pw string) error {
	switch {
	case pw == "":
		return errors.New("auth: empty password")
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("auth: password longer than %d bytes", MaxPasswordLen)
	case strings.ContainsAny(pw, "\x00\r\n"):
		// SASL PLAIN separates fields with NUL; CR and LF end protocol lines.
		return errors.New("auth: password contains NUL, CR or LF")
	}
	return nil
}

// Add creates a user. It fails with ErrUserExists if the address is taken.
func (d *DB) Add(ctx context.Context, address, password string) error {
	addr, h, err := d.credentials(ctx, address, password)
	if err != nil {
		return err
	}
	return d.insert(ctx, addr, h)
}

// AddHash creates a user with an existing password hash (argon2id/argon2i in PHC form or
// bcrypt, with or without Dovecot's {SCHEME} prefix), for migrations. The hash is
// replaced by an argon2id one at the user's first login.
func (d *DB) AddHash(ctx context.Context, address, hash string) error {
	addr, err := d.canonical(address)
	if err != nil {
		return err
	}
	if err := CheckHash(hash); err != nil {
		return fmt.Errorf("auth: add %s: %w", addr, err)
	}
	return d.insert(ctx, addr, hash)
}

// credentials returns the canonical form of address and the hash of password, for a
// user to be created or given a new password.
func (d *DB) credentials(ctx context.Context, address, password string) (addr, hash string, err error) {
	if addr, err = d.canonical(address); err != nil {
		return "", "", err
	}
	if hash, err = d.hash(ctx, password); err != nil {
		return "", "", err
	}
	return addr, hash, nil
}

// SetPassword replaces a user's password. It fails with ErrUnknownUser if there is no
// such user.
func (d *DB) SetPassword(ctx context.Context, address, password string) error {
	addr, h, err := d.credentials(ctx, address, password)
	if err != nil {
		return err
	}
	return d.change(ctx, "set password of", addr, ErrUnknownUser,
		`UPDATE users SET password = ?, updated = ? WHERE address = ?`, h, time.Now().Unix(), addr)
}

// Delete removes a user (not their mail). It fails with ErrUnknownUser if there is no
// such user.
func (d *DB) Delete(ctx context.Context, address string) error {
	addr, err := d.canonical(address)
	if err != nil {
		return err
	}
	return d.change(ctx, "delete", addr, ErrUnknownUser, `DELETE FROM users WHERE address = ?`, addr)
}

// insert creates the user addr (canonical) with the password hash h, or fails with
// ErrUserExists: the one insert path of Add and AddHash.
func (d *DB) insert(ctx context.Context, addr, h string) error {
	now := time.Now().Unix()
	return d.change(ctx, "add", addr, ErrUserExists,
		`INSERT INTO users(address, password, created, updated) VALUES(?, ?, ?, ?) ON CONFLICT(address) DO NOTHING`, addr, h, now, now)
}

// change runs a statement that changes the row of the user addr and fails with
// unchanged when it changed none (the user exists already, or does not exist). what
// names the change in errors ("auth: delete bob@example.org: ...").
func (d *DB) change(ctx context.Context, what, addr string, unchanged error, query string, args ...any) error {
	res, err := d.db.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("auth: %s %s: %w", what, addr, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", unchanged, addr)
	}
	return nil
}

// Exists reports whether the user exists. A name that is not a valid address does not.
func (d *DB) Exists(ctx context.Context, address string) (bool, error) {
	addr, err := d.canonical(address)
	if err != nil {
		return false, nil
	}
	var one int
	err = d.db.QueryRowContext(ctx, `SELECT 1 FROM users WHERE address = ?`, addr).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("auth: look up %s: %w", addr, err)
	}
	return true, nil
}

// List returns all users sorted by address.
func (d *DB) List(ctx context.Context) ([]User, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT address, password, created, updated FROM users ORDER BY address`)
	if err != nil {
		return nil, fmt.Errorf("auth: list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var h string
		var c, up int64
		if err := rows.Scan(&u.Address, &h, &c, &up); err != nil {
			return nil, fmt.Errorf("auth: list users: %w", err)
		}
		u.Scheme = schemeOf(h)
		u.Created, u.Updated = time.Unix(c, 0).UTC(), time.Unix(up, 0).UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: list users: %w", err)
	}
	return out, nil
}

func schemeOf(h string) string {
	if scheme, _, ok := legacyScheme(h); ok {
		return strings.ToLower(scheme)
	}
	s := stripScheme(h)
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return "argon2id"
	case strings.HasPrefix(s, "$argon2i$"):
		return "argon2i"
	case strings.HasPrefix(s, "$2"):
		return "bcrypt"
	}
	return "unknown"
}

// EnsureUser creates the user with a random password if it does not exist, and returns
// that password and created=true; for an existing user it changes nothing and returns
// "", false. A server's first start uses it for postmaster@DOMAIN and prints the password.
func (d *DB) EnsureUser(ctx context.Context, address string) (password string, created bool, err error) {
	ok, err := d.Exists(ctx, address)
	if err != nil || ok {
		return "", false, err
	}
	pw := rand.Text() // 26 base32 characters, 128 bits
	if err := d.Add(ctx, address, pw); err != nil {
		if errors.Is(err, ErrUserExists) { // created concurrently by another process
			return "", false, nil
		}
		return "", false, err
	}
	return pw, true, nil
}

// dummyHash is verified for unknown users so that their failure takes as long as a
// wrong password for a real user (no user enumeration by timing).
func (d *DB) dummyHash() string {
	d.dummyOnce.Do(func() {
		h, err := HashPassword(rand.Text(), d.params)
		if err != nil { // parameters were validated in Open; keep a parseable fallback
			h, _ = HashPassword(rand.Text(), DefaultArgon2Params)
		}
		d.dummy = h
	})
	return d.dummy
}

// PasswordHash returns the canonical form of address and its stored password hash (PHC
// string, or bcrypt's), for a directory that hands hashes to another node; it fails
// with ErrUnknownUser when there is no such user.
func (d *DB) PasswordHash(ctx context.Context, address string) (addr, hash string, err error) {
	if addr, err = d.canonical(address); err != nil {
		return "", "", fmt.Errorf("%w: %.80q", ErrUnknownUser, address)
	}
	err = d.db.QueryRowContext(ctx, `SELECT password FROM users WHERE address = ?`, addr).Scan(&hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", "", fmt.Errorf("%w: %s", ErrUnknownUser, addr)
	case err != nil:
		return "", "", fmt.Errorf("auth: look up %s: %w: %w", addr, ErrUnavailable, err)
	}
	return addr, hash, nil
}

// Authenticate implements Authenticator for local users. It returns the normalised
// address; ErrUnknownUser (an ErrInvalid) for a user that does not exist, ErrInvalid for
// a wrong password, ErrUnavailable when the database fails. A hash with other than the
// current parameters (or of another scheme) is replaced after a successful login.
func (d *DB) Authenticate(ctx context.Context, username, password string, _ netip.Addr) (string, error) {
	return d.verify(ctx, username, password, func(ctx context.Context, addr string) (string, error) {
		stored := ""
		err := d.db.QueryRowContext(ctx, `SELECT password FROM users WHERE address = ?`, addr).Scan(&stored)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("auth: look up %s: %w: %w", addr, ErrUnavailable, err)
		}
		return stored, nil
	}, true)
}

// HashLookup returns the stored password hash of a canonical address, "" when there is
// no such user, or an error (wrapping ErrUnavailable when the store cannot be asked).
type HashLookup func(ctx context.Context, addr string) (hash string, err error)

// WithHashes returns an Authenticator that verifies passwords against the hashes lookup
// returns (a directory shared by several nodes, such as PostgreSQL), with the database's
// hashing parameters, its bound on concurrent hashes, its default domain and its verify
// cache, as Authenticate does. Hashes are not upgraded: they belong to the directory.
func (d *DB) WithHashes(lookup HashLookup) Authenticator { return hashAuth{d, lookup} }

type hashAuth struct {
	d      *DB
	lookup HashLookup
}

func (h hashAuth) Authenticate(ctx context.Context, username, password string, _ netip.Addr) (string, error) {
	return h.d.verify(ctx, username, password, h.lookup, false)
}

// verify checks password against the hash lookup gives for username, with the hashing
// slots, the dummy hash for unknown users and the verify cache; upgrade rehashes an
// outdated hash in the local database.
func (d *DB) verify(ctx context.Context, username, password string, lookup HashLookup, upgrade bool) (string, error) {
	if password == "" || len(password) > MaxPasswordLen {
		return "", fmt.Errorf("%w: empty or oversized password", ErrInvalid)
	}
	addr, nerr := d.canonical(username)
	stored := ""
	if nerr == nil {
		var err error
		if stored, err = lookup(ctx, addr); err != nil {
			return "", err
		}
	}
	known := stored != ""
	if known && d.cache != nil && d.cache.hit(addr, stored, password) {
		return addr, nil
	}
	if !known {
		stored = d.dummyHash()
	}
	if err := d.acquire(ctx); err != nil {
		return "", err
	}
	if d.verifyHook != nil {
		d.verifyHook()
	}
	ok, rehash, err := VerifyPassword(stored, password, d.params)
	d.release()
	switch {
	case !known:
		return "", fmt.Errorf("%w: %.80q", ErrUnknownUser, username)
	case err != nil:
		d.log.Error("auth: stored password hash unusable", "user", addr, "err", err)
		return "", fmt.Errorf("%w: %s: %v", ErrInvalid, addr, err)
	case !ok:
		return "", fmt.Errorf("%w: wrong password for %s", ErrInvalid, addr)
	}
	if rehash && upgrade {
		stored = d.upgrade(ctx, addr, stored, password)
	}
	if d.cache != nil {
		d.cache.add(addr, stored, password)
	}
	return addr, nil
}

// upgrade replaces the hash old of addr with one of the current parameters, unless the
// password was changed meanwhile, and returns the hash now stored. Failure only delays
// the upgrade to the next login.
func (d *DB) upgrade(ctx context.Context, addr, old, password string) string {
	h, err := d.hash(ctx, password)
	var res sql.Result
	if err == nil {
		res, err = d.db.ExecContext(ctx, `UPDATE users SET password = ? WHERE address = ? AND password = ?`, h, addr, old)
	}
	if err != nil {
		d.log.Warn("auth: password hash upgrade failed", "user", addr, "err", err)
		return old
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return old // changed meanwhile
	}
	d.log.Info("auth: password hash upgraded", "user", addr, "scheme", schemeOf(old))
	return h
}
