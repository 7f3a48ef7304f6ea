package decisionlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // the embedded store

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
	// PruneInterval is how often old records are pruned. Default 1h.
	PruneInterval time.Duration `yaml:"-"`
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

type item struct {
	rec   *Record
	out   *Outcome
	flush chan struct{}
}

type metrics struct {
	written, dropped, failed, pruned prometheus.Counter
}

// maxPending bounds the outcomes waiting for their record.
const maxPending = 10000

// pendingTTL is how long an outcome waits for its record.
const pendingTTL = 10 * time.Minute

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
	l := &Log{
		cfg:     cfg,
		log:     deps.Logger,
		ch:      make(chan item, cfg.Buffer),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		pending: make(map[outcomeKey]pendingOutcome),
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
	}
	if reg != nil {
		for _, x := range []prometheus.Collector{m.written, m.dropped, m.failed, m.pruned} {
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

// Flush waits until every record and outcome added before it is written (or failed).
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

// Close writes what is buffered and closes the store.
func (l *Log) Close() error {
	l.closing.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.ch)
		l.mu.Unlock()
		close(l.stop)
		<-l.done
		l.pruning.Wait()
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
	for it := range l.ch {
		batch = append(batch[:0], it)
		timer.Reset(gather)
	fill:
		for len(batch) < l.cfg.BatchSize && it.flush == nil {
			select {
			case next, ok := <-l.ch:
				if !ok {
					break fill
				}
				batch = append(batch, next)
				it = next
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		l.write(batch)
	}
}

// write stores one batch: records first, then outcomes (which may join records of the
// same batch), then releases the flushes.
func (l *Log) write(batch []item) {
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
	if len(recs) > 0 {
		// an outcome that came first is applied to its record before the insert
		now := time.Now()
		for _, r := range recs {
			if r.Time.IsZero() {
				r.Time = now // the counters and the record must see the same time
			}
			k := outcomeKey{r.QueueID, normAddr(r.Recipient)}
			if o, ok := l.pending[k]; ok && r.QueueID != "" {
				applyOutcome(r, &o.Outcome)
				r.Deferrals += o.deferrals
				delete(l.pending, k)
			}
		}
		var err error
		for try := 0; try < 3; try++ {
			if err = l.insert(ctx, recs); err == nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
		}
		if err != nil {
			l.m.failed.Add(float64(len(recs)))
			l.log.Error("decision log: records lost", "records", len(recs), "store", l.where(), "err", err)
		} else {
			l.m.written.Add(float64(len(recs)))
		}
	}
	if len(outs) > 0 {
		if err := l.update(ctx, outs); err != nil {
			l.m.failed.Add(float64(len(outs)))
			l.log.Error("decision log: outcomes lost", "outcomes", len(outs), "store", l.where(), "err", err)
		}
	}
	for _, c := range flushes {
		close(c)
	}
}

func applyOutcome(r *Record, o *Outcome) {
	r.Outcome, r.OutcomeReason, r.OutcomeTime, r.Relay, r.DSN = o.Outcome, o.Reason, o.Time, o.Relay, o.DSN
}

// row returns a record's column values in the order of columns.
func row(r *Record) []any {
	t := r.Time
	pol := ""
	var flagged strings.Builder
	if len(r.Policies) > 0 {
		b, _ := json.Marshal(r.Policies)
		pol = string(b)
		for _, p := range r.Policies {
			if p.Status != "none" && p.Status != "pass" && p.Status != "" {
				flagged.WriteString(" " + p.Name)
			}
		}
		if flagged.Len() > 0 {
			flagged.WriteString(" ")
		}
	}
	tags := ""
	if len(r.Tags) > 0 {
		b, _ := json.Marshal(r.Tags)
		tags = string(b)
	}
	sender, rcpt := normAddr(r.Sender), normAddr(r.Recipient)
	var ot int64
	if !r.OutcomeTime.IsZero() {
		ot = micros(r.OutcomeTime)
	}
	return []any{
		micros(t), r.Session, r.Txn, r.Listener, ipBytes(r.ClientIP), r.ClientName, r.HELO, r.AuthUser,
		sender, domainPart(sender), rcpt, domainPart(rcpt), r.From, r.Subject,
		strings.Trim(r.MessageID, "<> "), r.Size, r.Stage, r.Verdict, r.Reply, r.Rule, r.Category, pol,
		flagged.String(), r.Score, tags, r.QueueID, r.Outcome, r.OutcomeReason, ot,
		r.Relay, r.DSN, r.Deferrals,
	}
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
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Several rows a statement: the cost of a statement (database/sql, the driver, the
	// VDBE program) is then shared by insertRows records.
	var st *sql.Stmt
	for i := 0; i < len(recs); i += insertRows {
		m := min(insertRows, len(recs)-i)
		if st == nil || m < insertRows {
			if st != nil {
				st.Close()
			}
			if st, err = tx.PrepareContext(ctx, insertSQL(m)); err != nil {
				return err
			}
			defer st.Close()
		}
		args := make([]any, 0, m*len(columns))
		for _, r := range recs[i : i+m] {
			args = append(args, row(r)...)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return err
		}
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
