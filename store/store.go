// Package store holds users' mailboxes: messages as maildir files (DATA/mail/DOMAIN/LOCAL/
// Maildir, folders as Maildir++ ".Sent", ".Drafts", ".Junk", ".Trash", so Dovecot and mutt
// can read them) and an index in SQLite (one database file per user, WAL mode) holding
// UIDVALIDITY, UIDNEXT, UIDs, flags and keywords, modseq, internal date, size and a cached
// envelope. IMAP, POP3 and delivery share one *Store; every change is announced to the
// mailbox's watchers (IDLE) in commit order. The index is rebuilt from the maildir when it
// is lost, and resynchronized when another program changed the maildir.
//
// Why one database per user: writers are serialized per SQLite file, so with one global
// file deliveries to different users would queue behind each other (and behind every
// IMAP flag change); per-user files keep users independent, make deleting or restoring a
// user a directory operation, and confine damage and rebuilds to one user. Open handles
// are cached and closed when idle (Config.MaxOpenUsers).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/internal/private"
	"github.com/portcullis-mail/portcullis/store/maildir"
)

// Config configures a Store.
type Config struct {
	// Dir is the root of the mail store (DATA/mail); users live in Dir/DOMAIN/LOCAL.
	Dir string `yaml:"dir"`
	// Quota is the storage limit per user; 0 means unlimited.
	Quota bytesize.Size `yaml:"quota"`
	// MaxMessageSize bounds one message (delivery and APPEND); default 64MiB.
	MaxMessageSize bytesize.Size `yaml:"max_message_size"`
	// MaxMailboxes bounds the number of folders per user; default 1000.
	MaxMailboxes int `yaml:"max_mailboxes"`
	// MaxOpenUsers bounds the user databases kept open while unused; default 256.
	MaxOpenUsers int `yaml:"max_open_users"`
	// FullScanInterval is how often a folder's directories are read even when their
	// mtimes say nothing changed (our own changes advance them, so a file another program
	// dropped at the same instant would otherwise wait); default 1 minute.
	FullScanInterval time.Duration `yaml:"full_scan_interval"`
	// ExpungesKept is how many expunged UIDs each folder remembers, with the modseq of
	// their expunge, for QRESYNC resynchronisation (RFC 7162 §3.2.5): between this many and
	// twice as many are kept. A client resynchronising from before the oldest is told of
	// every UID no longer present instead of those expunged since; default 10000.
	ExpungesKept int `yaml:"expunges_kept"`
	// SpecialUse lists the folders created for every user (name → RFC 6154 attribute);
	// default Sent, Drafts, Junk, Trash.
	SpecialUse map[string]string `yaml:"special_use"`
}

// Errors callers match with errors.Is.
var (
	ErrOverQuota     = errors.New("store: over quota")
	ErrTooBig        = errors.New("store: message too big")
	ErrNoMailbox     = errors.New("store: no such mailbox")
	ErrMailboxExists = errors.New("store: mailbox already exists")
	ErrTooMany       = errors.New("store: too many mailboxes")
	ErrNoMessage     = errors.New("store: no such message")
	ErrClosed        = errors.New("store: closed")
)

// Special-use attributes (RFC 6154).
const (
	UseSent   = `\Sent`
	UseDrafts = `\Drafts`
	UseJunk   = `\Junk`
	UseTrash  = `\Trash`
)

// Store is the mail store. It is safe for concurrent use.
type Store struct {
	cfg Config

	mu     sync.Mutex
	users  map[string]*User
	closed bool

	hub hub
}

// New returns a store rooted at cfg.Dir. It does no I/O; users are opened on first use.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("store: Config.Dir is required")
	}
	if cfg.Quota < 0 {
		return nil, fmt.Errorf("store: quota %d is negative", cfg.Quota)
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 64 << 20
	}
	if cfg.MaxMailboxes <= 0 {
		cfg.MaxMailboxes = 1000
	}
	if cfg.FullScanInterval <= 0 {
		cfg.FullScanInterval = time.Minute
	}
	if cfg.ExpungesKept <= 0 {
		cfg.ExpungesKept = 10000
	}
	if cfg.MaxOpenUsers <= 0 {
		cfg.MaxOpenUsers = 256
	}
	if cfg.SpecialUse == nil {
		cfg.SpecialUse = map[string]string{"Sent": UseSent, "Drafts": UseDrafts, "Junk": UseJunk, "Trash": UseTrash}
	}
	for name := range cfg.SpecialUse {
		if _, err := CanonicalMailbox(name); err != nil {
			return nil, fmt.Errorf("store: special_use: %w", err)
		}
	}
	return &Store{cfg: cfg, users: map[string]*User{}, hub: hub{watchers: map[watchKey]*watchSet{}}}, nil
}

// Config returns the effective configuration (defaults filled in).
func (s *Store) Config() Config { return s.cfg }

// Close closes every open user database. Users still held become unusable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for name, u := range s.users {
		errs = append(errs, u.closeDB())
		delete(s.users, name)
	}
	return errors.Join(errs...)
}

// Open returns the user's store handle, creating the maildir, the index and the
// special-use folders on first use. Call Release when done.
func (s *Store) Open(ctx context.Context, user string) (*User, error) {
	domain, local, err := userPath(user)
	if err != nil {
		return nil, err
	}
	key := local + "@" + domain
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if u, ok := s.users[key]; ok {
		u.refs++
		s.mu.Unlock()
		<-u.ready
		if u.openErr != nil {
			s.Release(u)
			return nil, u.openErr
		}
		return u, nil
	}
	u := &User{store: s, name: key, dir: filepath.Join(s.cfg.Dir, domain, local), refs: 1, ready: make(chan struct{})}
	u.root = maildir.Dir(filepath.Join(u.dir, "Maildir"))
	s.users[key] = u
	s.mu.Unlock()

	u.openErr = u.open(ctx)
	close(u.ready)
	if u.openErr != nil {
		s.mu.Lock()
		u.refs--
		if s.users[key] == u {
			delete(s.users, key)
		}
		s.mu.Unlock()
		u.closeDB()
		return nil, u.openErr
	}
	return u, nil
}

// Release gives back a handle from Open. Idle users beyond MaxOpenUsers are closed.
func (s *Store) Release(u *User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.refs--
	if len(s.users) <= s.cfg.MaxOpenUsers {
		return
	}
	for name, x := range s.users {
		if x.refs == 0 && x.db != nil {
			x.closeDB()
			delete(s.users, name)
			if len(s.users) <= s.cfg.MaxOpenUsers {
				return
			}
		}
	}
}

// Deliver stores msg into the user's mailbox (INBOX when mailbox is empty; a missing
// folder falls back to INBOX) with the given flags and returns its UID. The file is
// fsynced and indexed before Deliver returns. ErrOverQuota and ErrTooBig are permanent for
// this message; other errors are temporary.
func (s *Store) Deliver(ctx context.Context, user, mailbox string, msg io.Reader, flags []string) (uint32, error) {
	u, err := s.Open(ctx, user)
	if err != nil {
		return 0, err
	}
	defer s.Release(u)
	if mailbox == "" {
		mailbox = Inbox
	}
	res, err := u.Append(ctx, mailbox, msg, flags, time.Time{})
	if errors.Is(err, ErrNoMailbox) && mailbox != Inbox {
		res, err = u.Append(ctx, Inbox, msg, flags, time.Time{})
	}
	if err != nil {
		return 0, err
	}
	return res.UID, nil
}

// CheckQuota reports ErrOverQuota when a message of size bytes would not fit in the
// user's quota (SMTP answers 452 at RCPT, RFC 5321 §4.5.3.1.10). A user that does not exist
// yet has used nothing.
func (s *Store) CheckQuota(ctx context.Context, user string, size int64) error {
	if s.cfg.Quota == 0 {
		return nil
	}
	u, err := s.Open(ctx, user)
	if err != nil {
		return err
	}
	defer s.Release(u)
	used, err := u.Usage(ctx)
	if err != nil {
		return err
	}
	if used+size > int64(s.cfg.Quota) {
		return fmt.Errorf("%w: %s uses %d of %d bytes", ErrOverQuota, user, used, s.cfg.Quota)
	}
	return nil
}

// closeDB closes the user's index connections and their statements.
func (u *User) closeDB() error {
	var errs []error
	if u.db != nil {
		u.stmts.close()
		errs = append(errs, u.db.Close())
	}
	if u.lazy != nil {
		u.lazyStmts.close()
		errs = append(errs, u.lazy.Close())
	}
	return errors.Join(errs...)
}

const schema = `
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mailbox(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  uidvalidity INTEGER NOT NULL,
  uidnext INTEGER NOT NULL,
  modseq INTEGER NOT NULL DEFAULT 1,
  subscribed INTEGER NOT NULL DEFAULT 1,
  special_use TEXT NOT NULL DEFAULT '',
  dir_mtime TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS message(
  mailbox_id INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
  uid INTEGER NOT NULL,
  key TEXT NOT NULL,
  file TEXT NOT NULL,
  flags TEXT NOT NULL,
  modseq INTEGER NOT NULL,
  internal_date INTEGER NOT NULL,
  size INTEGER NOT NULL,
  crlf_size INTEGER NOT NULL DEFAULT -1,
  envelope BLOB,
  PRIMARY KEY(mailbox_id, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS message_key ON message(mailbox_id, key);
CREATE TABLE IF NOT EXISTS subscription(name TEXT PRIMARY KEY) WITHOUT ROWID;
`

// subscriptionsMigration moves subscriptions from mailbox.subscribed (which went with the
// folder's row) to their own table, once: RFC 3501 §6.3.6 and RFC 9051 keep a
// subscription when its folder is deleted, so it cannot live in the folder's row.
const subscriptionsMigration = `
INSERT OR IGNORE INTO subscription(name)
  SELECT name FROM mailbox WHERE subscribed <> 0 AND NOT EXISTS(SELECT 1 FROM meta WHERE k = 'subscriptions');
INSERT OR IGNORE INTO meta(k, v) VALUES('subscriptions', 1);
`

// open creates the user's directories and index and brings the index up to date with
// the maildir (rebuild when the index is new or lost).
func (u *User) open(ctx context.Context) error {
	if err := os.MkdirAll(u.dir, 0o700); err != nil {
		return fmt.Errorf("store: create %s: %w", u.dir, err)
	}
	if err := u.root.Create(); err != nil {
		return err
	}
	dbPath := filepath.Join(u.dir, "index.sqlite")
	// The index holds envelopes and subjects: readable by the owner only (and so its -wal
	// and -shm files, which SQLite creates with the database's mode).
	if err := private.DB(dbPath); err != nil {
		return fmt.Errorf("store: index: %w", err)
	}
	// synchronous(FULL): a committed UID assignment must survive power loss, or a UID could
	// be handed out twice in one UIDVALIDITY epoch.
	dsn := private.DSN(dbPath, "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate")
	openDB := func(dsn string, conns int) (*sql.DB, error) {
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open index %s: %w", dbPath, err)
		}
		db.SetMaxOpenConns(conns)
		db.SetConnMaxIdleTime(time.Minute)
		// One idle connection per pool: each SQLite connection holds its own schema,
		// prepared statements and page cache (about 250 KiB here), and a second idle one
		// per user was a third of the server's memory with 2,000 IDLE sessions of 200
		// users (bench/imapidle.sh).
		db.SetMaxIdleConns(1)
		return db, nil
	}
	db, err := openDB(dsn, 4)
	if err != nil {
		return err
	}
	u.db = db
	u.stmts.db = db
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("store: index schema %s: %w", dbPath, err)
	}
	if _, err := db.ExecContext(ctx, subscriptionsMigration); err != nil {
		return fmt.Errorf("store: index schema %s: %w", dbPath, err)
	}
	if err := addInternalZone(ctx, db); err != nil { // store/zone.go
		return fmt.Errorf("store: index schema %s: %w", dbPath, err)
	}
	if _, err := db.ExecContext(ctx, sieveSchema); err != nil { // store/sieve.go
		return fmt.Errorf("store: index schema %s: %w", dbPath, err)
	}
	if _, err := db.ExecContext(ctx, migrateSchema); err != nil {
		return fmt.Errorf("store: index schema %s: %w", dbPath, err)
	}
	if _, err := db.ExecContext(ctx, tombstoneSchema); err != nil {
		return fmt.Errorf("store: index schema %s: %w", dbPath, err)
	}
	// Flag changes and expunges commit through connections that do not fsync (lazyTx).
	lazy, err := openDB(strings.Replace(dsn, "synchronous(FULL)", "synchronous(NORMAL)", 1), 2)
	if err != nil {
		return err
	}
	u.lazy = lazy
	u.lazyStmts.db = lazy
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.discoverLocked(ctx); err != nil {
		return err
	}
	for name, use := range u.store.cfg.SpecialUse {
		if _, err := u.mailboxLocked(ctx, name); err == nil {
			continue
		}
		if err := u.createLocked(ctx, name, use); err != nil && !errors.Is(err, ErrMailboxExists) {
			return err
		}
		if err := u.addSubscription(ctx, name); err != nil {
			return err
		}
	}
	return nil
}
