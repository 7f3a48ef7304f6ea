package bayes

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Stores opens the global token database once per process for all its users: the
// policy that scores, the IMAP server's Junk trainer and the quarantine's release
// trainer. Each store holds the whole token table in memory (a million tokens is some
// tens of MiB): opened by each of the three, a process held three copies of it and
// loaded the table three times at start; two SQLite handles with their own caches
// also missed each other's training until the next refresh.
//
// A store that cannot be opened (PostgreSQL down) is retried with a back-off, from
// RetryMin doubling to RetryMax: an open loads the whole table, and a Junk move per
// second used to try it for every move. Meanwhile Open returns the last error at once.
// The change of state is logged once each way (to the log Open is given), not for
// every move.
//
// The zero value is not usable: call NewStores. Stores is safe for concurrent use.
type Stores struct {
	// RetryMin and RetryMax bound the back-off after a failed open. [1s, 1m]
	RetryMin, RetryMax time.Duration

	mu   sync.Mutex
	open map[string]*sharedStore
	down map[string]*openFailure

	attempts int // opens tried, for the tests
}

type sharedStore struct {
	Store
	key  string
	refs int
}

type openFailure struct {
	err   error
	next  time.Time     // no open before
	delay time.Duration // the current back-off
}

// NewStores returns an empty set of shared stores with the default back-off.
func NewStores() *Stores {
	return &Stores{RetryMin: time.Second, RetryMax: time.Minute}
}

// Open returns the global store at path (SQLite) or postgres (when set), opened by
// OpenStore on first use and shared afterwards. The Store returned is the caller's
// reference: its Close releases it, and the store is closed with the last one.
func (ss *Stores) Open(ctx context.Context, path, postgres string, refresh time.Duration, log *slog.Logger) (Store, error) {
	key := "sqlite:" + filepath.Clean(path)
	if postgres != "" {
		key = "postgres:" + postgres
	}
	ss.mu.Lock()
	defer ss.mu.Unlock() // held while the table loads: the others wait for it, not load it again
	if s := ss.open[key]; s != nil {
		s.refs++
		return &storeRef{sharedStore: s, ss: ss}, nil
	}
	f := ss.down[key]
	if f != nil && time.Now().Before(f.next) {
		return nil, fmt.Errorf("%w (not tried again before %s)", f.err, f.next.Format(time.TimeOnly))
	}
	ss.attempts++
	st, err := OpenStore(ctx, path, postgres, refresh, log)
	if err != nil {
		if ctx.Err() != nil {
			// the caller left during the open: not the database's failure
			return nil, err
		}
		if f == nil {
			f = &openFailure{delay: ss.RetryMin}
			if ss.down == nil {
				ss.down = map[string]*openFailure{}
			}
			ss.down[key] = f
			logger(log).Warn("bayes: the global token database cannot be opened; retrying with a back-off",
				"db", redactKey(key), "retry_in", f.delay, "err", err)
		} else {
			f.delay = min(2*f.delay, ss.RetryMax)
		}
		f.err, f.next = err, time.Now().Add(f.delay)
		return nil, err
	}
	if f != nil {
		delete(ss.down, key)
		logger(log).Info("bayes: the global token database is open again", "db", redactKey(key))
	}
	if ss.open == nil {
		ss.open = map[string]*sharedStore{}
	}
	s := &sharedStore{Store: st, key: key, refs: 1}
	ss.open[key] = s
	return &storeRef{sharedStore: s, ss: ss}, nil
}

func logger(log *slog.Logger) *slog.Logger {
	if log != nil {
		return log
	}
	return slog.Default()
}

// redactKey names a store for the log without the password of its DSN (pgWhere, as
// PostgresStore.Path).
func redactKey(key string) string {
	dsn, ok := strings.CutPrefix(key, "postgres:")
	if !ok {
		return key
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "postgres (connection string not parsed)"
	}
	return pgWhere(cfg)
}

// storeRef is one user's reference to a shared store.
type storeRef struct {
	*sharedStore
	ss   *Stores
	once sync.Once
}

// Close releases the reference; the last one closes the store.
func (r *storeRef) Close() error {
	var err error
	r.once.Do(func() {
		r.ss.mu.Lock()
		defer r.ss.mu.Unlock()
		r.refs--
		if r.refs == 0 {
			delete(r.ss.open, r.key)
			err = r.Store.Close()
		}
	})
	return err
}
