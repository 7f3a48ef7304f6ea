package bayes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
)

// PolicyConfig configures the bayes policy instance, for example
//
//	bayes: { bayes: { db: /var/lib/portcullis/bayes/global.db, per_user: true,
//	                  unsure: [0.2, 0.5], autolearn: { spam: 0.9999, ham: 0.0001 } } }
type PolicyConfig struct {
	// DB is the global token database (SQLite); required.
	DB string `yaml:"db"`
	// PerUser scores a message with a single recipient against that user's own
	// database (<dir of db>/users/<user>.db) when it exists and has at least
	// MinUserTrained messages of each class.
	PerUser        bool `yaml:"per_user"`
	MinUserTrained int  `yaml:"min_user_trained"` // default 50
	MaxOpenUsers   int  `yaml:"max_open_users"`   // default 256
	// Unsure is [ham cut-off, spam cut-off], 0 < ham ≤ spam ≤ 1: a score ≥ the spam
	// cut-off is spam, one below the ham cut-off is ham, anything between is unsure
	// (default [0.2, 0.5]).
	Unsure []float64 `yaml:"unsure"`
	// Autolearn trains the global database with confidently scored messages, in the
	// background (off by default).
	Autolearn AutolearnConfig `yaml:"autolearn"`
	// Classifier tunes the combining and the tokenizer's limits (the cut-offs are
	// Unsure).
	Classifier Config `yaml:"classifier"`
}

// AutolearnConfig sets the auto-learn thresholds.
type AutolearnConfig struct {
	// Spam learns messages scored at least this as spam (0: never).
	Spam float64 `yaml:"spam"`
	// Ham learns messages scored at most this as ham (0: never).
	Ham float64 `yaml:"ham"`
	// QueueLength bounds the messages waiting to be learned (default 100); messages
	// beyond it are not learned.
	QueueLength int `yaml:"queue_length"`
}

// Policy is the data-stage policy: it scores the message and reports the facts
// score (probability of spam), spam, unsure and tokens. Result.Score is the probability.
type Policy struct {
	cfg  PolicyConfig
	log  *slog.Logger
	deps Deps

	openMu   sync.Mutex
	err      error
	failedAt time.Time // of the last failed open: retried after openRetry
	global   Store
	cls      *Classifier
	users    *userStores

	learnMu   sync.RWMutex // guards sending on learn against Close
	closed    bool
	learn     chan Update // token hashes, not message bytes
	learnOnce sync.Once
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Deps are what the policy takes from the server around it.
type Deps struct {
	// Logger receives the warnings of per-user lookups and auto-learn; nil means
	// slog.Default().
	Logger *slog.Logger
	// Postgres, when set, is the site-wide token database (config bayes.postgres)
	// used instead of the SQLite db; per-user databases stay SQLite files beside db.
	Postgres string
	// Refresh is how often the PostgreSQL store reads other nodes' training (default
	// 30s).
	Refresh time.Duration
	// Stores, when set, is the process's shared global stores: the policy uses the one
	// the Junk and release trainers use instead of loading its own copy of the table.
	Stores *Stores
}

var (
	_ policy.DataPolicy   = (*Policy)(nil)
	_ policy.FactDeclarer = (*Policy)(nil)
)

// NewPolicy validates cfg and returns the policy; the database is opened on first use.
// (New builds the Classifier that the policy wraps.)
func NewPolicy(cfg PolicyConfig, deps Deps) (*Policy, error) {
	if cfg.DB == "" {
		return nil, fmt.Errorf("bayes: db is required")
	}
	if cfg.Unsure != nil {
		if len(cfg.Unsure) != 2 || cfg.Unsure[0] <= 0 || cfg.Unsure[0] > cfg.Unsure[1] || cfg.Unsure[1] > 1 {
			return nil, fmt.Errorf("bayes: unsure must be [ham, spam] with 0 < ham <= spam <= 1, got %v", cfg.Unsure)
		}
		cfg.Classifier.HamCutoff, cfg.Classifier.SpamCutoff = cfg.Unsure[0], cfg.Unsure[1]
	}
	if cfg.MinUserTrained <= 0 {
		cfg.MinUserTrained = 50
	}
	if cfg.MaxOpenUsers <= 0 {
		cfg.MaxOpenUsers = 256
	}
	if cfg.Autolearn.QueueLength <= 0 {
		cfg.Autolearn.QueueLength = 100
	}
	if a := cfg.Autolearn; (a.Spam != 0 && (a.Spam <= 0.5 || a.Spam > 1)) || (a.Ham != 0 && (a.Ham < 0 || a.Ham >= 0.5)) {
		return nil, fmt.Errorf("bayes: autolearn thresholds must be spam in (0.5, 1] and ham in [0, 0.5), got %v and %v", a.Spam, a.Ham)
	}
	if _, err := New(cfg.Classifier, NewMemStore()); err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Policy{cfg: cfg, log: log, deps: deps}, nil
}

// openRetry is how long a failed open is remembered before the next message tries
// again: a database (PostgreSQL above all) down at the first message must not turn the
// scorer off until a restart, nor be dialled for every message while it is down.
var openRetry = 10 * time.Second

// OpenStore opens the global token database as the policy and the trainers of a
// server use it: the PostgreSQL store when postgres is set, else the SQLite database
// at path.
func OpenStore(ctx context.Context, path, postgres string, refresh time.Duration, log *slog.Logger) (Store, error) {
	if postgres != "" {
		s, err := OpenPostgres(ctx, postgres, PostgresOptions{RefreshInterval: refresh, Logger: log})
		if err == nil {
			warnUntrainedShared(ctx, s, path, log)
		}
		return s, err
	}
	return OpenSQLite(ctx, path, SQLiteOptions{})
}

// warnUntrainedShared logs when the site-wide database has never been trained but this
// node still has the SQLite database of a setup before bayes.postgres (which defaults
// to directory.postgres, so an upgrade switches to it silently): the node then scores
// nothing (bayes.untrained) although it was trained, and the admin must be told how to
// get the training back.
func warnUntrainedShared(ctx context.Context, s *PostgresStore, path string, log *slog.Logger) {
	if tot, err := s.Lookup(ctx, nil, nil); err != nil || tot.Spam+tot.Ham > 0 {
		return
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	log.Warn("bayes: the shared PostgreSQL token database (bayes.postgres, by default directory.postgres) is empty while this node's SQLite database exists and is not used: train the shared one (portcullis bayes train) or set bayes.local: true",
		"postgres", s.Path(), "sqlite", path, "sqlite_bytes", fi.Size())
}

func (p *Policy) open(ctx context.Context) error {
	p.openMu.Lock()
	defer p.openMu.Unlock()
	if p.cls != nil {
		return nil
	}
	if p.err != nil && time.Since(p.failedAt) < openRetry {
		return p.err
	}
	var s Store
	var err error
	if p.deps.Stores != nil {
		s, err = p.deps.Stores.Open(ctx, p.cfg.DB, p.deps.Postgres, p.deps.Refresh, p.log)
	} else {
		s, err = OpenStore(ctx, p.cfg.DB, p.deps.Postgres, p.deps.Refresh, p.log)
	}
	if err == nil {
		c, _ := New(p.cfg.Classifier, s)
		if err = c.CheckStore(ctx); err != nil {
			s.Close()
		} else {
			p.global, p.cls, p.err = s, c, nil
			p.users = &userStores{global: p.cfg.DB, max: p.cfg.MaxOpenUsers, open: map[string]*userStore{}}
			return nil
		}
	}
	if ctx.Err() != nil {
		// this message's session ended (the client left, its deadline passed) during
		// the open, which loads the whole table: not the database's failure, so the
		// next message tries at once instead of answering temperror for openRetry
		return err
	}
	p.err, p.failedAt = err, time.Now()
	return err
}

// DeclareFacts lists the facts CheckData reports, with example values.
func (p *Policy) DeclareFacts() map[string]any {
	return map[string]any{"score": 0.97, "spam": true, "unsure": false, "tokens": 42, "user": false}
}

// CheckData scores the message.
func (p *Policy) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	if err := p.open(ctx); err != nil {
		return policy.Result{Status: policy.StatusTempError, Reason: "bayes.error", Err: err}
	}
	if tx == nil || tx.Message == nil {
		return policy.Result{Status: policy.StatusNone, Reason: "bayes.no_message"}
	}
	raw, err := tx.Message.Bytes()
	if err != nil {
		return policy.Result{Status: policy.StatusTempError, Reason: "bayes.error", Err: fmt.Errorf("bayes: read message: %w", err)}
	}
	cls, user := p.cls, false
	if p.cfg.PerUser && len(tx.Envelope.Rcpts) == 1 {
		s, release, err := p.users.acquire(ctx, tx.Envelope.Rcpts[0].String())
		if err != nil {
			p.log.Warn("bayes: per-user database", "rcpt", tx.Envelope.Rcpts[0].String(), "err", err)
		} else if s != nil {
			defer release()
			// Lookup of no tokens returns just the totals, without I/O
			if tot, err := s.Lookup(ctx, nil, nil); err == nil && int(tot.Spam) >= p.cfg.MinUserTrained && int(tot.Ham) >= p.cfg.MinUserTrained {
				if c, err := New(p.cfg.Classifier, s); err == nil {
					cls, user = c, true
				}
			}
		}
	}
	sc, err := cls.Classify(ctx, raw)
	if err != nil {
		return policy.Result{Status: policy.StatusTempError, Reason: "bayes.error", Err: err}
	}
	r := policy.Result{
		Score: sc.Prob,
		Facts: map[string]any{"score": sc.Prob, "spam": sc.Spam, "unsure": sc.Unsure, "tokens": sc.Tokens, "user": user},
	}
	switch {
	case sc.Tokens == 0 && sc.Prob == 0.5:
		r.Status, r.Reason = policy.StatusNeutral, "bayes.untrained"
	case sc.Spam:
		r.Status, r.Reason = policy.StatusFail, "bayes.spam"
	case sc.Unsure:
		r.Status, r.Reason = policy.StatusNeutral, "bayes.unsure"
	default:
		r.Status, r.Reason = policy.StatusPass, "bayes.ham"
	}
	if !user {
		// the global database learns only from its own verdicts
		p.autolearn(raw, sc)
	}
	return r
}

func (p *Policy) autolearn(raw []byte, sc Score) {
	a := p.cfg.Autolearn
	var class Class
	switch {
	case a.Spam > 0 && sc.Tokens > 0 && sc.Prob >= a.Spam:
		class = Spam
	case a.Ham > 0 && sc.Tokens > 0 && sc.Prob <= a.Ham:
		class = Ham
	default:
		return
	}
	p.learnMu.RLock()
	defer p.learnMu.RUnlock()
	if p.closed {
		return
	}
	p.learnOnce.Do(func() {
		p.learn = make(chan Update, a.QueueLength)
		p.wg.Add(1)
		go p.learner()
	})
	select {
	case p.learn <- p.cls.TrainUpdate(raw, class):
	default: // backlog full: skip rather than slow down the SMTP session
	}
}

func (p *Policy) learner() {
	defer p.wg.Done()
	for up := range p.learn {
		batch := []Update{up}
		for len(batch) < 50 {
			select {
			case up, ok := <-p.learn:
				if !ok {
					goto flush
				}
				batch = append(batch, up)
				continue
			default:
			}
			break
		}
	flush:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := p.global.Apply(ctx, batch); err != nil {
			p.log.Warn("bayes: autolearn", "messages", len(batch), "err", err)
		}
		cancel()
	}
}

// Close stops auto-learning (finishing the backlog) and closes the databases.
func (p *Policy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.learnMu.Lock()
		p.closed = true
		p.learnMu.Unlock()
		p.learnOnce.Do(func() {}) // no learner may start after this
		if p.learn != nil {
			close(p.learn)
			p.wg.Wait()
		}
		p.openMu.Lock()
		defer p.openMu.Unlock()
		p.err, p.failedAt = ErrClosed, time.Now().Add(1<<62) // no open after Close
		if p.global != nil {
			err = p.users.close()
			if e := p.global.Close(); err == nil {
				err = e
			}
		}
	})
	return err
}
