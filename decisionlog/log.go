package decisionlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"modernc.org/sqlite" // the embedded store
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/portcullis-mail/portcullis/internal/private"
)

// DefaultRetention is how long records are kept when Config.Retention is zero.
const DefaultRetention = 90 * 24 * time.Hour

// Config configures the decision log.
type Config struct {
	// Path is the SQLite database file, used when postgres is empty. Default
	// DATA/decisions.db.
	Path string `yaml:"path"`
	// Postgres is a PostgreSQL connection string (postgres://user:password@host/db);
	// when set, the records live there, shared by every node that names the same
	// database.
	Postgres string `yaml:"postgres"`
	// Retention is how long records are kept; older ones are pruned every hour, in
	// small batches. Default 2160h (90 days); negative: forever.
	Retention time.Duration `yaml:"retention"`
	// Buffer is how many records may wait for the writer; beyond it new ones are
	// dropped, counted in portcullis_decisionlog_records_dropped_total and logged, so
	// that an SMTP reply never waits for the log. Default 20000.
	Buffer int `yaml:"buffer"`
	// BatchSize is the most records written in one transaction. Default 1000.
	BatchSize int `yaml:"batch_size"`
	// OutcomeWait is how long the writer holds the record of an accepted message (one
	// queued, with a queue id) for its delivery outcome, so that a message delivered
	// within it is written once, with its outcome, instead of inserted and then updated
	// (the update was half the log's cost per message). Without an outcome by then the
	// record is written as it is, and a later outcome updates it. A held record is in
	// memory like a buffered one: Close writes it, a crash loses it. Default 30s;
	// negative: off.
	OutcomeWait time.Duration `yaml:"outcome_wait"`
	// PruneInterval is how often old records are pruned. Default 1h.
	PruneInterval time.Duration `yaml:"-"`
	// MaxHeld is the most records held for their outcome (OutcomeWait); beyond it, or
	// beyond maxHeldBytes, the oldest are written early. Default 20000.
	MaxHeld int `yaml:"-"`
}

// Deps are the decision log's collaborators.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics
}

// Log is an open decision log: its asynchronous writer and its queries.
type Log struct {
	db  *sql.DB
	d   dialect
	cfg Config
	log *slog.Logger

	ch      chan item
	done    chan struct{}
	stop    chan struct{}
	closing sync.Once
	pruning sync.WaitGroup
	mu      sync.Mutex // guards closed
	closed  bool

	// pending are outcomes that arrived before their record was written (the
	// delivery can finish before smtpd hands over the record), by queue id and
	// recipient; the writer alone touches it.
	pending   map[outcomeKey]pendingOutcome
	lastSweep time.Time

	// held are the accepted records waiting for their outcome (Config.OutcomeWait), by
	// queue id and recipient, and in heldQ in the order they were held (which is the
	// order of their deadlines: one wait for all); the writer alone touches them.
	held      map[outcomeKey]*heldRecord
	heldQ     []*heldRecord // entries released early have rec == nil
	heldBytes int

	// ins are the SQLite INSERT statements of 1, 2, 4 ... insertRows records
	// (insertStmt); the writer alone touches them, Close closes them.
	ins map[int]*sql.Stmt

	// noRollups makes the aggregations read the records even where the counters
	// could answer (tests compare the two).
	noRollups bool
	rollup    rollupState // the counters' build and cap (rollup.go)

	m       metrics
	dropMu  sync.Mutex
	dropped int64 // since the last log line about drops
	dropLog time.Time
}

type outcomeKey struct{ queue, rcpt string }

// pendingOutcome is the latest outcome of a record not written yet, and the deferrals
// before it.
type pendingOutcome struct {
	Outcome
	deferrals int
}

func deferral(o *Outcome) int {
	if o.Outcome == OutcomeDeferred {
		return 1
	}
	return 0
}

// heldRecord is a record held for its outcome until deadline; size is its estimated
// memory.
type heldRecord struct {
	rec      *Record
	key      outcomeKey
	deadline time.Time
	size     int
}

type item struct {
	rec   *Record
	out   *Outcome
	flush chan struct{}
}

type metrics struct {
	written, dropped, failed, pruned prometheus.Counter
	held                             prometheus.Gauge
	// outcomes joined to their record: held (before its insert), update, early
	// (arrived before the record)
	joined *prometheus.CounterVec
}

// maxPending bounds the outcomes waiting for their record.
const maxPending = 10000

// pendingTTL is how long an outcome waits for its record.
const pendingTTL = 10 * time.Minute

// DefaultOutcomeWait is how long an accepted record waits for its outcome when
// Config.OutcomeWait is zero. A local delivery takes milliseconds, but in a burst the
// queue delivers behind the inflow (delivery.inflow_delay, then its backlog): in
// bench/smtp.sh's bursts of 3000 messages on a loaded 2-core machine, 5 s caught 23% of
// the outcomes (the rest were updates), 15 s 48-97%, 30 s all of them. Memory is
// bounded by MaxHeld and maxHeldBytes whatever the wait.
const DefaultOutcomeWait = 30 * time.Second

// maxHeldBytes bounds the memory of the records held for their outcome (by their
// estimated size), whatever Config.MaxHeld allows.
const maxHeldBytes = 32 << 20

// Open opens (creating if needed) the decision log and starts its writer and pruner.
func Open(ctx context.Context, cfg Config, deps Deps) (*Log, error) {
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 20000
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = time.Hour
	}
	if cfg.OutcomeWait == 0 {
		cfg.OutcomeWait = DefaultOutcomeWait
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = 20000
	}
	l := &Log{
		cfg:     cfg,
		log:     deps.Logger,
		ch:      make(chan item, cfg.Buffer),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		pending: make(map[outcomeKey]pendingOutcome),
		held:    make(map[outcomeKey]*heldRecord),
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	l.m = newMetrics(deps.Registerer)
	var err error
	if cfg.Postgres != "" {
		l.d = dialect{postgres: true}
		var pc *pgx.ConnConfig
		if pc, err = pgx.ParseConfig(cfg.Postgres); err != nil {
			return nil, fmt.Errorf("decisionlog: postgres connection string: %w", err)
		}
		// A generic plan (what PostgreSQL reuses for a prepared statement after five
		// runs) is planned for an average domain, and the recipients' domain is
		// nearly always ours: it walks the time index through the whole table for a
		// rare sender domain. Each search is planned for its own values.
		if pc.RuntimeParams == nil {
			pc.RuntimeParams = map[string]string{}
		}
		if _, ok := pc.RuntimeParams["plan_cache_mode"]; !ok {
			pc.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
		}
		l.db = stdlib.OpenDB(*pc)
		l.db.SetMaxOpenConns(8)
	} else {
		if cfg.Path == "" {
			return nil, errors.New("decisionlog: neither a SQLite path nor a PostgreSQL connection string")
		}
		if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
			return nil, fmt.Errorf("decisionlog: directory of %s: %w", cfg.Path, err)
		}
		// Records hold addresses and subjects: the owner's eyes only.
		if err := private.DB(cfg.Path); err != nil {
			return nil, fmt.Errorf("decisionlog: %w", err)
		}
		dsn := private.DSN(cfg.Path,
			"_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_txlock=immediate")
		if l.db, err = sql.Open("sqlite", dsn); err != nil {
			return nil, fmt.Errorf("decisionlog: open %s: %w", cfg.Path, err)
		}
		l.db.SetMaxOpenConns(4)
	}
	if err := l.createSchema(ctx); err != nil {
		l.db.Close()
		return nil, fmt.Errorf("decisionlog: create schema in %s: %w", l.where(), err)
	}
	go l.writer()
	l.pruning.Add(1)
	go l.pruner()
	return l, nil
}

// createSchema creates the tables and indexes, and the counters from the records when
// they are missing.
func (l *Log) createSchema(ctx context.Context) error {
	schema := l.d.schema() + l.d.rollupSchema()
	if l.d.postgres {
		// nodes starting together would race on CREATE ... IF NOT EXISTS: one at a time
		schema = "BEGIN; SELECT pg_advisory_xact_lock(7301917); " + schema + " COMMIT;"
	}
	if _, err := l.db.ExecContext(ctx, schema); err != nil {
		return err
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if l.d.postgres {
		// one node builds the counters; the others find them built
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7301917)"); err != nil {
			return err
		}
	}
	if err := l.backfill(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (l *Log) where() string {
	if l.d.postgres {
		return "postgres"
	}
	return l.cfg.Path
}

func newMetrics(reg prometheus.Registerer) metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_decisionlog_" + name, Help: help})
	}
	m := metrics{
		written: c("records_written_total", "Decision records written to the log."),
		dropped: c("records_dropped_total", "Decision records dropped because the writer's buffer was full."),
		failed:  c("records_failed_total", "Decision records and outcomes lost because the store failed to write them."),
		pruned:  c("records_pruned_total", "Decision records deleted by retention."),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "portcullis_decisionlog_records_held",
			Help: "Accepted messages' records the writer holds for their delivery outcome (stats.outcome_wait)."}),
		joined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_decisionlog_outcomes_joined_total",
			Help: "Outcomes joined to their record, by how: held (written with the record), update (of a stored record), early (before the record arrived)."},
			[]string{"how"}),
	}
	if reg != nil {
		for _, x := range []prometheus.Collector{m.written, m.dropped, m.failed, m.pruned, m.held, m.joined} {
			if err := reg.Register(x); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					panic(err)
				}
			}
		}
	}
	return m
}

// Add hands a record to the writer. It never blocks: when the buffer is full the record
// is dropped, counted and logged.
func (l *Log) Add(r Record) { l.enqueue(item{rec: &r}) }

// SetOutcome records what became of a queued message for one recipient. It never blocks,
// as Add.
func (l *Log) SetOutcome(o Outcome) { l.enqueue(item{out: &o}) }

func (l *Log) enqueue(it item) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.drop(1)
		return
	}
	select {
	case l.ch <- it:
	default:
		l.drop(1)
	}
}

// drop counts lost records and logs them at most once a second.
func (l *Log) drop(n int) {
	l.m.dropped.Add(float64(n))
	l.dropMu.Lock()
	l.dropped += int64(n)
	now := time.Now()
	if now.Sub(l.dropLog) < time.Second {
		l.dropMu.Unlock()
		return
	}
	n64 := l.dropped
	l.dropped, l.dropLog = 0, now
	l.dropMu.Unlock()
	l.log.Warn("decision log: buffer full, records dropped", "dropped", n64, "buffer", l.cfg.Buffer)
}

// Flush waits until every record and outcome added before it is written (or failed),
// records held for their outcome included.
func (l *Log) Flush(ctx context.Context) error {
	c := make(chan struct{})
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("decisionlog: closed")
	}
	select {
	case l.ch <- item{flush: c}:
	case <-ctx.Done():
		l.mu.Unlock()
		return ctx.Err()
	}
	l.mu.Unlock()
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is buffered (and held) and closes the store.
func (l *Log) Close() error {
	l.closing.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.ch)
		l.mu.Unlock()
		close(l.stop)
		<-l.done
		l.pruning.Wait()
		for _, st := range l.ins {
			st.Close()
		}
	})
	return l.db.Close()
}

// gather is how long the writer collects records before it writes them: each SQLite
// transaction costs about as much as a hundred records, so a record a millisecond would
// otherwise cost a transaction each (measured: the log took half of an SMTP server's
// throughput that way). A Flush, a full batch or Close writes at once.
const gather = 100 * time.Millisecond

func (l *Log) writer() {
	defer close(l.done)
	batch := make([]item, 0, l.cfg.BatchSize)
	timer := time.NewTimer(gather)
	timer.Stop()
	// expiry wakes the idle writer when the oldest held record's wait ends; while
	// records flow, every batch's write releases the expired ones anyway.
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	for {
		var expired <-chan time.Time
		if d, ok := l.nextDeadline(); ok {
			expiry.Reset(time.Until(d))
			expired = expiry.C
		}
		var it item
		var ok bool
		select {
		case it, ok = <-l.ch:
		case <-expired:
			l.write(nil, false)
			continue
		}
		expiry.Stop()
		if !ok {
			l.write(nil, true)
			return
		}
		batch = append(batch[:0], it)
		timer.Reset(gather)
		closed := false
	fill:
		for len(batch) < l.cfg.BatchSize && it.flush == nil {
			select {
			case next, ok := <-l.ch:
				if !ok {
					closed = true
					break fill
				}
				batch = append(batch, next)
				it = next
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		l.write(batch, closed)
		if closed {
			return
		}
	}
}

// write stores one batch: records first (those of accepted messages held for their
// outcome instead, and the held ones whose wait ended released), then outcomes (which
// join a held record, or update a stored one, or one of the same batch), then releases
// the flushes. A flush, or the end (Close), writes every held record.
func (l *Log) write(batch []item, end bool) {
	var recs []*Record
	var outs []*Outcome
	var flushes []chan struct{}
	for _, it := range batch {
		switch {
		case it.rec != nil:
			recs = append(recs, it.rec)
		case it.out != nil:
			outs = append(outs, it.out)
		case it.flush != nil:
			flushes = append(flushes, it.flush)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	var ins []*Record
	for _, r := range recs {
		if r.Time.IsZero() {
			r.Time = now // the counters and the record must see the same time
		}
		k := outcomeKey{r.QueueID, normAddr(r.Recipient)}
		if r.QueueID != "" {
			// an outcome that came first is applied to its record before the insert
			if o, ok := l.pending[k]; ok {
				applyOutcome(r, &o.Outcome)
				r.Deferrals += o.deferrals
				delete(l.pending, k)
				l.m.joined.WithLabelValues("early").Inc()
			}
		}
		if !l.holds(r) {
			ins = append(ins, r)
			continue
		}
		if h := l.held[k]; h != nil {
			// the same queue id and recipient twice: both now, so that an outcome
			// updates both as it would without the wait
			ins = append(ins, l.unhold(h), r)
			continue
		}
		h := &heldRecord{rec: r, key: k, deadline: now.Add(l.cfg.OutcomeWait), size: recordSize(r)}
		l.held[k] = h
		l.heldQ = append(l.heldQ, h)
		l.heldBytes += h.size
	}
	var upd []*Outcome
	for _, o := range outs {
		if o.QueueID != "" {
			if h := l.held[outcomeKey{o.QueueID, normAddr(o.Recipient)}]; h != nil {
				// Any outcome ends the wait: a deferral's next attempt is minutes
				// away, and a later outcome updates the record as usual (counting the
				// deferral here, as the update would).
				if o.Time.IsZero() {
					o.Time = now
				}
				r := l.unhold(h)
				applyOutcome(r, o)
				r.Deferrals += deferral(o)
				ins = append(ins, r)
				l.m.joined.WithLabelValues("held").Inc()
				continue
			}
		}
		upd = append(upd, o)
	}
	ins = l.release(ins, now, end || len(flushes) > 0)
	l.m.held.Set(float64(len(l.held)))
	if len(ins) > 0 {
		var err error
		for try := 0; try < 3; try++ {
			if err = l.insert(ctx, ins); err == nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
		}
		if err != nil {
			l.m.failed.Add(float64(len(ins)))
			l.log.Error("decision log: records lost", "records", len(ins), "store", l.where(), "err", err)
		} else {
			l.m.written.Add(float64(len(ins)))
		}
	}
	if len(upd) > 0 {
		if err := l.updateRetrying(ctx, upd); err != nil {
			l.m.failed.Add(float64(len(upd)))
			l.log.Error("decision log: outcomes lost", "outcomes", len(upd), "store", l.where(), "err", err)
		}
	}
	for _, c := range flushes {
		close(c)
	}
}

// holds reports whether r waits for its outcome: an accepted message's record, queued
// (it has a queue id: the outcome comes from this node's queue), its outcome unknown.
// A quarantined message's outcome (released, deleted) is a person's decision, days
// later; an LMTP delivery's record has its outcome already.
func (l *Log) holds(r *Record) bool {
	return l.cfg.OutcomeWait > 0 && r.Verdict == VerdictAccept && r.QueueID != "" && r.Outcome == ""
}

// unhold takes h out of the held set (its queue entry stays, emptied) and returns its
// record.
func (l *Log) unhold(h *heldRecord) *Record {
	r := h.rec
	delete(l.held, h.key)
	l.heldBytes -= h.size
	h.rec = nil
	return r
}

// release appends to ins the held records to write now: all of them, or those whose
// wait ends within the next gather (one transaction for the records of a gather, not
// one each) and the oldest beyond the bounds of the held set.
func (l *Log) release(ins []*Record, now time.Time, all bool) []*Record {
	// An entry released early (its outcome came) leaves heldQ only at its front: behind
	// one record still waiting, every record held since would stay there, a rate ×
	// OutcomeWait of entries however few are held. Drop them when they are most of it
	// (amortized: the queue has at least doubled since the last time).
	if n := len(l.heldQ); n > heldQSlack && n > 2*len(l.held) {
		q := make([]*heldRecord, 0, len(l.held))
		for _, h := range l.heldQ {
			if h.rec != nil {
				q = append(q, h)
			}
		}
		l.heldQ = q
	}
	for len(l.heldQ) > 0 {
		h := l.heldQ[0]
		if h.rec != nil {
			if !all && len(l.held) <= l.cfg.MaxHeld && l.heldBytes <= maxHeldBytes && h.deadline.After(now.Add(gather)) {
				break
			}
			ins = append(ins, l.unhold(h))
		}
		l.heldQ[0] = nil
		l.heldQ = l.heldQ[1:]
	}
	if len(l.heldQ) == 0 {
		l.heldQ = nil // let the backing array go
	}
	return ins
}

// heldQSlack is how many entries heldQ may have before release drops those released
// early (a variable for the tests).
var heldQSlack = 1024

// nextDeadline is when the oldest held record's wait ends.
func (l *Log) nextDeadline() (time.Time, bool) {
	for len(l.heldQ) > 0 && l.heldQ[0].rec == nil {
		l.heldQ[0] = nil
		l.heldQ = l.heldQ[1:]
	}
	if len(l.heldQ) == 0 {
		return time.Time{}, false
	}
	return l.heldQ[0].deadline, true
}

// recordSize estimates the memory a held record takes.
func recordSize(r *Record) int {
	n := 400 + len(r.Session) + len(r.Txn) + len(r.Listener) + len(r.ClientName) + len(r.HELO) + len(r.AuthUser) +
		len(r.Sender) + len(r.Recipient) + len(r.From) + len(r.Subject) + len(r.MessageID) + len(r.Stage) +
		len(r.Verdict) + len(r.Reply) + len(r.Rule) + len(r.Category) + len(r.QueueID)
	for _, p := range r.Policies {
		n += 80 + len(p.Name) + len(p.Stage) + len(p.Status) + len(p.Reason)
	}
	for _, t := range r.Tags {
		n += 16 + len(t)
	}
	return n
}

// updateTries bounds the attempts of a batch of outcomes that lost to a concurrent
// transaction (a deadlock with the pruner or another node's writer, a busy SQLite).
const updateTries = 6

// updateRetrying applies outcomes, again after a transient conflict (see transient),
// with a growing, jittered pause: the transaction that won finishes meanwhile.
func (l *Log) updateRetrying(ctx context.Context, outs []*Outcome) error {
	pause := 50 * time.Millisecond
	for try := 1; ; try++ {
		err := l.update(ctx, outs)
		if err == nil || try == updateTries || !transient(err) {
			return err
		}
		l.log.Warn("decision log: outcomes conflicted, retrying", "outcomes", len(outs), "try", try, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause/2 + rand.N(pause)):
		}
		pause *= 2
	}
}

// transient reports whether err is a conflict with another transaction that the same
// transaction may pass when tried again: PostgreSQL's deadlock_detected (40P01) and
// serialization_failure (40001), SQLite's BUSY and LOCKED (after busy_timeout).
func transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40P01" || pe.Code == "40001"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff // the primary code of an extended one (SQLITE_BUSY_SNAPSHOT ...)
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

func applyOutcome(r *Record, o *Outcome) {
	r.Outcome, r.OutcomeReason, r.OutcomeTime, r.Relay, r.DSN = o.Outcome, o.Reason, o.Time, o.Relay, o.DSN
}

// appendRow appends a record's column values in the order of columns; buf is scratch
// space for the JSON columns, returned for the next record.
func appendRow(args []any, r *Record, buf []byte) ([]any, []byte) {
	pol, flagged := "", ""
	if len(r.Policies) > 0 {
		buf = appendPolicies(buf[:0], r.Policies)
		pol = string(buf)
		// flagged: the names of the policies that found something, space-separated
		// and space-framed (filter.go searches " name ")
		buf = buf[:0]
		for _, p := range r.Policies {
			if p.Status != "none" && p.Status != "pass" && p.Status != "" {
				buf = append(append(buf, ' '), p.Name...)
			}
		}
		if len(buf) > 0 {
			flagged = string(append(buf, ' '))
		}
	}
	tags := ""
	if len(r.Tags) > 0 {
		buf = appendStrings(buf[:0], r.Tags)
		tags = string(buf)
	}
	sender, rcpt := normAddr(r.Sender), normAddr(r.Recipient)
	var ot int64
	if !r.OutcomeTime.IsZero() {
		ot = micros(r.OutcomeTime)
	}
	return append(args,
		micros(r.Time), r.Session, r.Txn, r.Listener, ipBytes(r.ClientIP), r.ClientName, r.HELO, r.AuthUser,
		sender, domainPart(sender), rcpt, domainPart(rcpt), r.From, r.Subject,
		strings.Trim(r.MessageID, "<> "), r.Size, r.Stage, r.Verdict, r.Reply, r.Rule, r.Category, pol,
		flagged, r.Score, tags, r.QueueID, r.Outcome, r.OutcomeReason, ot,
		r.Relay, r.DSN, r.Deferrals,
	), buf
}

// row returns a record's column values in the order of columns.
func row(r *Record) []any {
	args, _ := appendRow(make([]any, 0, len(columns)), r, nil)
	return args
}

func domainPart(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return a[i+1:]
	}
	return ""
}

// insertRows is how many records one SQLite INSERT writes (32 columns each: far below
// SQLite's limit of 32,766 variables).
const insertRows = 64

// insertSQL is the INSERT of n records.
func insertSQL(n int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ")"
	return "INSERT INTO decisions (" + strings.Join(columns, ", ") + ") VALUES " + strings.TrimSuffix(strings.Repeat(one+", ", n), ", ")
}

// insertStmt returns the prepared INSERT of n records (a power of two up to
// insertRows: a batch is written in insertRows chunks, then halves, so that at most
// seven statements, prepared once, write any batch). database/sql keeps it prepared on
// each connection it ran on; Tx.StmtContext reuses that. The writer alone calls it.
func (l *Log) insertStmt(ctx context.Context, n int) (*sql.Stmt, error) {
	if st := l.ins[n]; st != nil {
		return st, nil
	}
	st, err := l.db.PrepareContext(ctx, insertSQL(n))
	if err != nil {
		return nil, err
	}
	if l.ins == nil {
		l.ins = map[int]*sql.Stmt{}
	}
	l.ins[n] = st
	return st, nil
}

// counted returns what the counters count of a record, as row stores it.
func countedOf(r *Record) counted {
	sender := normAddr(r.Sender)
	return counted{
		t: micros(r.Time), category: r.Category, verdict: r.Verdict, outcome: r.Outcome, rcpt: normAddr(r.Recipient),
		size: r.Size, score: r.Score, sender: sender, senderDomain: domainPart(sender), clientHex: clientHex(ipBytes(r.ClientIP)),
	}
}

func (l *Log) insert(ctx context.Context, recs []*Record) error {
	ds := newDeltas()
	for _, r := range recs {
		ds.add(countedOf(r), 1)
	}
	if l.d.postgres {
		conn, err := l.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			rows := make([][]any, len(recs))
			for i, r := range recs {
				rows[i] = row(r)
			}
			tx, err := pc.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"decisions"}, columns, pgx.CopyFromRows(rows)); err != nil {
				return err
			}
			err = l.apply(ctx, func(ctx context.Context, q string, args ...any) error {
				_, err := tx.Exec(ctx, q, args...)
				return err
			}, ds)
			if err != nil {
				return err
			}
			return tx.Commit(ctx)
		})
	}
	// Several rows a statement: the cost of a statement (database/sql, the driver, the
	// VDBE program) is then shared by insertRows records. The statements are prepared
	// once (see insertStmt): a batch of a gather under load is a hundred records or
	// so, and preparing its two statements of hundreds of placeholders anew took a
	// tenth of the writer's CPU. They are prepared before the transaction, which
	// holds a connection: a first prepare takes another.
	var sizes []int
	for n := len(recs); n > 0; {
		m := insertRows
		for m > n {
			m /= 2
		}
		sizes = append(sizes, m)
		n -= m
	}
	stmts := make([]*sql.Stmt, len(sizes))
	for i, m := range sizes {
		var err error
		if stmts[i], err = l.insertStmt(ctx, m); err != nil {
			return err
		}
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	args := make([]any, 0, insertRows*len(columns))
	var buf []byte
	for j, i := 0, 0; j < len(sizes); j++ {
		m, st := sizes[j], stmts[j]
		args = args[:0]
		for _, r := range recs[i : i+m] {
			args, buf = appendRow(args, r, buf)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return err
		}
		i += m
	}
	if err := l.apply(ctx, sqlExec(tx), ds); err != nil {
		return err
	}
	return tx.Commit()
}

func (l *Log) update(ctx context.Context, outs []*Outcome) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	cnt, err := l.counterState(ctx, tx) // which records the counters count (all, once built)
	if err != nil {
		return err
	}
	// The counters move each record from its old outcome to the new one: read it
	// first (locked, in PostgreSQL, against another node's outcome for it).
	lock := ""
	if l.d.postgres {
		lock = " FOR UPDATE"
	}
	sel, err := tx.PrepareContext(ctx, l.d.rebind(
		`SELECT id, t, category, verdict, outcome, size FROM decisions WHERE queue_id = ? AND queue_id <> '' AND recipient = ?`+lock))
	if err != nil {
		return err
	}
	defer sel.Close()
	st, err := tx.PrepareContext(ctx, l.d.rebind(
		`UPDATE decisions SET outcome = ?, outcome_reason = ?, outcome_t = ?, relay = ?, dsn = ?, deferrals = deferrals + ? WHERE queue_id = ? AND queue_id <> '' AND recipient = ?`))
	if err != nil {
		return err
	}
	defer st.Close()
	var missing []*Outcome
	ds := newDeltas()
	for _, o := range outs {
		t := o.Time
		if t.IsZero() {
			t = time.Now()
		}
		o.Time = t
		rcpt := normAddr(o.Recipient)
		rows, err := sel.QueryContext(ctx, o.QueueID, rcpt)
		if err != nil {
			return err
		}
		var found []counted
		for rows.Next() {
			c := counted{rcpt: rcpt}
			if err := rows.Scan(&c.id, &c.t, &c.category, &c.verdict, &c.outcome, &c.size); err != nil {
				rows.Close()
				return err
			}
			found = append(found, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(found) == 0 {
			missing = append(missing, o)
			continue
		}
		if _, err := st.ExecContext(ctx, o.Outcome, o.Reason, micros(t), o.Relay, o.DSN, deferral(o), o.QueueID, rcpt); err != nil {
			return err
		}
		for _, c := range found {
			if cnt.counts(c.id) {
				ds.move(c, o.Outcome)
			}
		}
	}
	if err := l.apply(ctx, sqlExec(tx), ds); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	l.m.joined.WithLabelValues("update").Add(float64(len(outs) - len(missing)))
	if now := time.Now(); now.Sub(l.lastSweep) > time.Minute {
		// outcomes of messages smtpd never saw (the DSNs the queue makes) wait here
		// for nothing: forget them after a while
		l.lastSweep = now
		for k, o := range l.pending {
			if now.Sub(o.Time) > pendingTTL {
				delete(l.pending, k)
			}
		}
	}
	for _, o := range missing {
		if len(l.pending) >= maxPending {
			l.m.failed.Inc()
			l.log.Warn("decision log: outcome without a record", "queue_id", o.QueueID, "rcpt", o.Recipient, "outcome", o.Outcome)
			continue
		}
		k := outcomeKey{o.QueueID, normAddr(o.Recipient)}
		p := l.pending[k]
		l.pending[k] = pendingOutcome{Outcome: *o, deferrals: p.deferrals + deferral(o)}
	}
	return nil
}
