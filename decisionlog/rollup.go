package decisionlog

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Rollups: the admin's charts aggregate a month of the whole site, which over the raw
// records cost about 1.4 s of CPU per 100,000 records (ten seconds at ten million). The
// writer keeps counters beside the records instead, in the same transaction as the
// records they count, so that a chart reads a few thousand counters:
//
//   - decision_hours: per hour × category × verdict × outcome × (connection or
//     recipient), the count and bytes: BlockedByCategory and Traffic.
//   - decision_scores: per hour × whole score (floor), the transaction records:
//     ScoreHistogram with width 1.
//   - decision_top: per day × kind (sender, sender domain, client) × key, the blocked
//     records' count and bytes: Top of blocked senders, domains and clients. Each day
//     keeps at most topCap keys per kind (the largest counts): Optimize (hourly) trims
//     the rest into decision_top_rest, which keeps what was trimmed and the most any
//     key may have lost (err), so that a list read from trimmed days says how far off
//     it may be (TopEntry.Approx). Without the cap a month of daily counters is nearly
//     as many rows as the blocked records themselves (every spammer's address is new),
//     and reading them took 1.2–5 s at ten million records.
//
// Outcome updates move a record's count from its old outcome to its new one; pruning
// subtracts what it deletes. A filter the counters cannot answer (a user's scope, any
// narrowing, a time bound inside an hour) reads the records as before.
//
// A log without counters (written before they existed) gets them in the background:
// Open notes the highest record id (meta "rollups_floor") and the records above it are
// counted by the writer as usual, while a builder counts the older ones in chunks of
// ids, recording how far it came ("rollups_built") in the chunk's transaction, so that a
// restart resumes. Until it is done ("rollups"), the aggregations read the records, and
// an outcome or a prune moves the counters only of records already counted.
func (d dialect) rollupSchema() string {
	without := " WITHOUT ROWID"
	if d.postgres {
		without = ""
	}
	return `
CREATE TABLE IF NOT EXISTS decision_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decision_hours (
	h BIGINT NOT NULL, category TEXT NOT NULL, verdict TEXT NOT NULL, outcome TEXT NOT NULL,
	conn SMALLINT NOT NULL, n BIGINT NOT NULL, bytes BIGINT NOT NULL,
	PRIMARY KEY (h, category, verdict, outcome, conn))` + without + `;
CREATE TABLE IF NOT EXISTS decision_scores (
	h BIGINT NOT NULL, bin BIGINT NOT NULL, n BIGINT NOT NULL,
	PRIMARY KEY (h, bin))` + without + `;
CREATE TABLE IF NOT EXISTS decision_top (
	kind SMALLINT NOT NULL, d BIGINT NOT NULL, k TEXT NOT NULL, n BIGINT NOT NULL, bytes BIGINT NOT NULL,
	PRIMARY KEY (kind, d, k))` + without + `;
CREATE TABLE IF NOT EXISTS decision_top_rest (
	kind SMALLINT NOT NULL, d BIGINT NOT NULL, n BIGINT NOT NULL, bytes BIGINT NOT NULL,
	err BIGINT NOT NULL, err_bytes BIGINT NOT NULL,
	PRIMARY KEY (kind, d))` + without + `;
` + d.dailySchema()
}

// The kinds of decision_top, and the Top keys they answer.
const (
	topKindSender = iota
	topKindSenderDomain
	topKindClient
)

var topKinds = map[TopKey]int{TopSender: topKindSender, TopSenderDomain: topKindSenderDomain, TopClient: topKindClient}

var blockedVerdicts = []string{VerdictReject, VerdictTempfail, VerdictDiscard, VerdictQuarantine}

func isBlocked(v string) bool { return slices.Contains(blockedVerdicts, v) }

type hourKey struct {
	h                          int64
	category, verdict, outcome string
	conn                       int
}

type scoreKey struct{ h, bin int64 }

type topKey struct {
	kind int
	d    int64
	k    string
}

type sums struct{ n, bytes int64 }

// deltas are the changes a batch makes to the counters.
type deltas struct {
	hours  map[hourKey]sums
	scores map[scoreKey]int64
	top    map[topKey]sums
}

func newDeltas() *deltas {
	return &deltas{hours: map[hourKey]sums{}, scores: map[scoreKey]int64{}, top: map[topKey]sums{}}
}

// counted is what the counters know of one stored record, as stored.
type counted struct {
	id                               int64 // 0 when unknown (a new record)
	t                                int64
	category, verdict, outcome, rcpt string
	size                             int64
	score                            float64
	sender, senderDomain, clientHex  string
}

func clientHex(ip []byte) string { return strings.ToUpper(hex.EncodeToString(ip)) }

// scoreBin is floor(score), as the histogram's SQL computes it.
func scoreBin(s float64) int64 { return int64(math.Floor(s)) }

// add counts c sign times (1: a new record, -1: a deleted one).
func (ds *deltas) add(c counted, sign int64) {
	h := c.t / usHour
	conn := 0
	if c.rcpt == "" {
		conn = 1
	}
	hk := hourKey{h, c.category, c.verdict, c.outcome, conn}
	s := ds.hours[hk]
	ds.hours[hk] = sums{s.n + sign, s.bytes + sign*c.size}
	if conn == 0 {
		ds.scores[scoreKey{h, scoreBin(c.score)}] += sign
	}
	if isBlocked(c.verdict) {
		d := c.t / usDay
		for kind, k := range [...]string{topKindSender: c.sender, topKindSenderDomain: c.senderDomain, topKindClient: c.clientHex} {
			tk := topKey{kind, d, k}
			s := ds.top[tk]
			ds.top[tk] = sums{s.n + sign, s.bytes + sign*c.size}
		}
	}
}

// move moves a transaction record from its old outcome to a new one.
func (ds *deltas) move(c counted, newOutcome string) {
	if c.outcome == newOutcome {
		return
	}
	h := c.t / usHour
	for _, x := range []struct {
		o    string
		sign int64
	}{{c.outcome, -1}, {newOutcome, 1}} {
		k := hourKey{h, c.category, c.verdict, x.o, 0}
		if c.rcpt == "" {
			k.conn = 1
		}
		s := ds.hours[k]
		ds.hours[k] = sums{s.n + x.sign, s.bytes + x.sign*c.size}
	}
}

// execer runs a statement in a transaction of either store (database/sql's or pgx's).
type execer func(ctx context.Context, query string, args ...any) error

func sqlExec(tx *sql.Tx) execer {
	return func(ctx context.Context, q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
}

// apply writes the deltas, in key order so that concurrent writers of several nodes
// take the counters' row locks in the same order. Counters that fall to zero are
// deleted.
func (l *Log) apply(ctx context.Context, tx execer, ds *deltas) error {
	hk := make([]hourKey, 0, len(ds.hours))
	for k, s := range ds.hours {
		if s.n != 0 || s.bytes != 0 {
			hk = append(hk, k)
		}
	}
	slices.SortFunc(hk, func(a, b hourKey) int {
		return cmp.Or(cmp.Compare(a.h, b.h), strings.Compare(a.category, b.category), strings.Compare(a.verdict, b.verdict),
			strings.Compare(a.outcome, b.outcome), cmp.Compare(a.conn, b.conn))
	})
	err := l.upsert(ctx, tx, "decision_hours", []string{"h", "category", "verdict", "outcome", "conn"}, []string{"n", "bytes"}, len(hk),
		func(i int) []any {
			k := hk[i]
			s := ds.hours[k]
			return []any{k.h, k.category, k.verdict, k.outcome, k.conn, s.n, s.bytes}
		})
	if err != nil {
		return err
	}
	sk := make([]scoreKey, 0, len(ds.scores))
	for k, n := range ds.scores {
		if n != 0 {
			sk = append(sk, k)
		}
	}
	slices.SortFunc(sk, func(a, b scoreKey) int { return cmp.Or(cmp.Compare(a.h, b.h), cmp.Compare(a.bin, b.bin)) })
	err = l.upsert(ctx, tx, "decision_scores", []string{"h", "bin"}, []string{"n"}, len(sk),
		func(i int) []any { k := sk[i]; return []any{k.h, k.bin, ds.scores[k]} })
	if err != nil {
		return err
	}
	tk := make([]topKey, 0, len(ds.top))
	for k, s := range ds.top {
		if s.n != 0 || s.bytes != 0 {
			tk = append(tk, k)
		}
	}
	slices.SortFunc(tk, func(a, b topKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.d, b.d), strings.Compare(a.k, b.k))
	})
	return l.upsert(ctx, tx, "decision_top", []string{"kind", "d", "k"}, []string{"n", "bytes"}, len(tk),
		func(i int) []any { k := tk[i]; s := ds.top[k]; return []any{k.kind, k.d, k.k, s.n, s.bytes} })
}

// upsertRows is how many counters one statement adds: few statements per batch, and
// far below SQLite's limit of 32,766 variables.
const upsertRows = 200

// upsert adds rows (keys then values) to table's counters, then deletes those at zero
// when any value was negative.
func (l *Log) upsert(ctx context.Context, tx execer, table string, keys, vals []string, n int, row func(int) []any) error {
	if n == 0 {
		return nil
	}
	cols := append(slices.Clone(keys), vals...)
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	set := make([]string, len(vals))
	for i, v := range vals {
		set[i] = v + " = " + table + "." + v + " + excluded." + v
	}
	head := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES "
	tail := " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
	var negative []int // rows whose counters may have fallen to zero
	for i := 0; i < n; i += upsertRows {
		m := min(upsertRows, n-i)
		args := make([]any, 0, m*len(cols))
		for j := i; j < i+m; j++ {
			r := row(j)
			for _, v := range r[len(keys):] {
				if v.(int64) < 0 {
					negative = append(negative, j)
					break
				}
			}
			args = append(args, r...)
		}
		q := head + strings.TrimSuffix(strings.Repeat(one+", ", m), ", ") + tail
		if err := tx(ctx, l.d.rebind(q), args...); err != nil {
			return fmt.Errorf("counters %s: %w", table, err)
		}
	}
	// Counters at zero are deleted one by one, by key: a scan for them would read
	// the whole table (millions of sender counters) at every prune.
	if len(negative) > 0 {
		del := "DELETE FROM " + table + " WHERE " + strings.Join(keys, " = ? AND ") + " = ?"
		for _, v := range vals {
			del += " AND " + v + " = 0"
		}
		del = l.d.rebind(del)
		for _, j := range negative {
			if err := tx(ctx, del, row(j)[:len(keys)]...); err != nil {
				return fmt.Errorf("counters %s: %w", table, err)
			}
		}
	}
	return nil
}

// rollupState is what the log knows of its counters.
type rollupState struct {
	// built is set once the counters count every record (the build is done): the
	// aggregations may read them, and an outcome or a prune need not ask which
	// records they count.
	built atomic.Bool
	// topCap overrides the most keys a day keeps per kind (tests); 0: topCap.
	topCap int
}

// noBackgroundBuild leaves the counters' build to the tests' BuildStep.
var noBackgroundBuild atomic.Bool

// topCap is the most keys decision_top keeps per day and kind. The chart's month then
// reads at most 30 × 200 counters per list (plus the day's keys since the last trim)
// instead of every blocked sender of the month; a key among a month's top ten of a real
// site (a campaign, a persistent sender or network) is among a day's largest two hundred
// on the days it sends, so the lists stay exact there, and where a day was trimmed the
// list says by how much it may be short.
const topCap = 200

func (l *Log) cap() int {
	if l.rollup.topCap > 0 {
		return l.rollup.topCap
	}
	return topCap
}

// buildChunk is how many records (by id) one step of the background build counts: a
// transaction of a second or so on a loaded machine, so that the writer never waits long.
var buildChunk int64 = 50000

// The advisory lock of the counters' build and trim steps in PostgreSQL (several nodes
// share them); 7301917 is the schema's.
const rollupLock = 7301918

// buildState is how far the build of the counters from the records has come: the
// records above floor are counted by the writer, those up to built by the builder.
type buildState struct {
	done         bool
	floor, built int64
}

// counts reports whether the counters count the record id.
func (s buildState) counts(id int64) bool { return s.done || id > s.floor || id <= s.built }

// counterState reads the build's progress in tx. In PostgreSQL the rows are locked
// shared: a build step (which updates them) waits for this transaction, and this one
// for a build step, so that a record cannot be counted by the builder between the read
// and this transaction's move of its counters.
func (l *Log) counterState(ctx context.Context, tx *sql.Tx) (buildState, error) {
	if l.rollup.built.Load() {
		return buildState{done: true}, nil
	}
	lock := ""
	if l.d.postgres {
		lock = " FOR SHARE"
	}
	s, err := l.readState(ctx, tx, lock)
	if err == nil && s.done {
		l.rollup.built.Store(true)
	}
	return s, err
}

func (l *Log) readState(ctx context.Context, tx *sql.Tx, lock string) (buildState, error) {
	rows, err := tx.QueryContext(ctx, "SELECT k, v FROM decision_meta WHERE k IN ('rollups', 'rollups_floor', 'rollups_built')"+lock)
	if err != nil {
		return buildState{}, err
	}
	defer rows.Close()
	var s buildState
	seen := 0
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return buildState{}, err
		}
		seen++
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "rollups":
			s.done = true
		case "rollups_floor":
			s.floor = n
		case "rollups_built":
			s.built = n
		}
	}
	if err := rows.Err(); err != nil {
		return buildState{}, err
	}
	if seen == 0 {
		return buildState{}, errors.New("decisionlog: the counters' state is missing")
	}
	if s.built >= s.floor {
		s.done = true
	}
	return s, nil
}

// backfill starts the build of the counters when the store has none yet (a log written
// before they existed), in the caller's transaction (which holds the schema's lock):
// it notes the highest record id, above which the writer counts. The build itself runs
// in the background (buildRollups), so that Open returns at once.
func (l *Log) backfill(ctx context.Context, tx *sql.Tx) error {
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM decision_meta WHERE k IN ('rollups', 'rollups_floor')").Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		s, err := l.readState(ctx, tx, "")
		if err == nil && s.done {
			l.rollup.built.Store(true)
		}
		if err != nil {
			return err
		}
		return l.openDays(ctx, tx) // days.go
	}
	if l.d.postgres {
		// Inserts in flight (another node's writer) finish before the highest id is
		// read, and new ones wait for this transaction: every record above it is then
		// counted by a writer, every one below by the builder.
		if _, err := tx.ExecContext(ctx, "LOCK TABLE decisions IN SHARE MODE"); err != nil {
			return err
		}
	}
	var lo, hi int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MIN(id), 1) - 1, COALESCE(MAX(id), 0) FROM decisions").Scan(&lo, &hi); err != nil {
		return err
	}
	// the daily counters first: their triggers would carry every deletion below (and,
	// in PostgreSQL, after the lock on decisions: a writer holding it may be waiting
	// for the hourly counters, which the triggers' recreation locks)
	if err := l.resetDays(ctx, tx); err != nil {
		return fmt.Errorf("start counters: %w", err)
	}
	for _, s := range []string{"DELETE FROM decision_hours", "DELETE FROM decision_scores", "DELETE FROM decision_top", "DELETE FROM decision_top_rest"} {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("start counters: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, l.d.rebind("INSERT INTO decision_meta (k, v) VALUES ('rollups_floor', ?), ('rollups_built', ?)"),
		strconv.FormatInt(hi, 10), strconv.FormatInt(lo, 10)); err != nil {
		return fmt.Errorf("start counters: %w", err)
	}
	if lo >= hi {
		if _, err := tx.ExecContext(ctx, "INSERT INTO decision_meta (k, v) VALUES ('rollups', '1')"); err != nil {
			return fmt.Errorf("start counters: %w", err)
		}
		l.rollup.built.Store(true)
	} else {
		l.rollup.built.Store(false)
		l.log.Info("decision log: building the charts' counters from the records in the background", "records", hi-lo, "store", l.where())
	}
	return nil
}

// buildRollups counts the records below the floor into the counters, a chunk at a time,
// until they are all counted or the log closes (the next open resumes).
func (l *Log) buildRollups(ctx context.Context) {
	start, logged := time.Now(), time.Now()
	for !l.rollup.built.Load() {
		done, err := l.buildStep(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.log.Error("decision log: building the charts' counters", "err", err, "store", l.where())
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
			continue
		case done:
			l.rollup.built.Store(true)
			l.log.Info("decision log: the charts' counters are built", "took", time.Since(start).Round(time.Second), "store", l.where())
			// the day and week figures read daily counters: sum them now, not at
			// the next hourly Optimize
			if err := l.rollDays(ctx, time.Now().UnixMicro()/usDay); err != nil && ctx.Err() == nil {
				l.log.Error("decision log: daily counters", "err", err)
			}
			return
		}
		if time.Since(logged) > time.Minute {
			logged = time.Now()
			l.log.Info("decision log: still building the charts' counters", "took", time.Since(start).Round(time.Second))
		}
		// let the writer in between steps
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// buildStep counts the next chunk of records below the floor, and reports whether the
// build is done.
func (l *Log) buildStep(ctx context.Context) (bool, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	lock := ""
	if l.d.postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.Itoa(rollupLock)+")"); err != nil {
			return false, err
		}
		lock = " FOR UPDATE"
	}
	s, err := l.readState(ctx, tx, lock)
	if err != nil || s.done {
		return s.done, err
	}
	hi := min(s.built+buildChunk, s.floor)
	blocked := "verdict IN ('reject', 'tempfail', 'discard', 'quarantine')"
	hexIP := "hex(client_ip)"
	if l.d.postgres {
		hexIP = `upper(encode(client_ip, 'hex'))`
	}
	ids := "id > ? AND id <= ?"
	add := func(table string, keys ...string) string {
		set := " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET n = " + table + ".n + excluded.n"
		if table != "decision_scores" {
			set += ", bytes = " + table + ".bytes + excluded.bytes"
		}
		return set
	}
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO decision_hours (h, category, verdict, outcome, conn, n, bytes)
			SELECT t / %d, category, verdict, outcome, CASE WHEN recipient = '' THEN 1 ELSE 0 END, COUNT(*), SUM(size)
			FROM decisions WHERE %s GROUP BY 1, 2, 3, 4, 5`, usHour, ids) + add("decision_hours", "h", "category", "verdict", "outcome", "conn"),
		fmt.Sprintf(`INSERT INTO decision_scores (h, bin, n) SELECT t / %d, %s, COUNT(*) FROM decisions
			WHERE recipient <> '' AND %s GROUP BY 1, 2`, usHour, l.d.floorDiv("score", 1), ids) + add("decision_scores", "h", "bin"),
		fmt.Sprintf(`INSERT INTO decision_top (kind, d, k, n, bytes) SELECT %d, t / %d, sender, COUNT(*), SUM(size)
			FROM decisions WHERE %s AND %s GROUP BY 2, 3`, topKindSender, usDay, blocked, ids) + add("decision_top", "kind", "d", "k"),
		fmt.Sprintf(`INSERT INTO decision_top (kind, d, k, n, bytes) SELECT %d, t / %d, sender_domain, COUNT(*), SUM(size)
			FROM decisions WHERE %s AND %s GROUP BY 2, 3`, topKindSenderDomain, usDay, blocked, ids) + add("decision_top", "kind", "d", "k"),
		fmt.Sprintf(`INSERT INTO decision_top (kind, d, k, n, bytes) SELECT %d, t / %d, %s, COUNT(*), SUM(size)
			FROM decisions WHERE %s AND %s GROUP BY 2, 3`, topKindClient, usDay, hexIP, blocked, ids) + add("decision_top", "kind", "d", "k"),
	} {
		if _, err := tx.ExecContext(ctx, l.d.rebind(q), s.built, hi); err != nil {
			return false, fmt.Errorf("build counters: %w", err)
		}
	}
	// the days of the chunk are trimmed at once, or a year's build would leave every
	// blocked key of the year in decision_top until the next Optimize
	if err := l.trimTop(ctx, tx); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, l.d.rebind("UPDATE decision_meta SET v = ? WHERE k = 'rollups_built'"), strconv.FormatInt(hi, 10)); err != nil {
		return false, err
	}
	done := hi >= s.floor
	if done {
		if _, err := tx.ExecContext(ctx, "INSERT INTO decision_meta (k, v) VALUES ('rollups', '1')"); err != nil {
			return false, err
		}
	}
	return done, tx.Commit()
}

// RollupsReady reports whether the charts' counters are built: until then (the first
// open of a large log written before they existed) the aggregations read the records,
// slower but exact.
func (l *Log) RollupsReady(ctx context.Context) bool {
	if l.rollup.built.Load() {
		return true
	}
	// another node may have finished the build
	var n int
	if err := l.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM decision_meta WHERE k = 'rollups'").Scan(&n); err == nil && n > 0 {
		l.rollup.built.Store(true)
		return true
	}
	return false
}

// topDay is one day of one kind of decision_top.
type topDay struct{ kind, d int64 }

// overCap lists the days holding more than cap keys of a kind.
func (l *Log) overCap(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]topDay, error) {
	// newest first: the charts read the last weeks, and the first trim of a log
	// written before the cap takes a while
	rows, err := q.QueryContext(ctx, l.d.rebind("SELECT kind, d FROM decision_top GROUP BY kind, d HAVING COUNT(*) > ? ORDER BY d DESC, kind"), l.cap())
	if err != nil {
		return nil, fmt.Errorf("trim counters: %w", err)
	}
	defer rows.Close()
	var days []topDay
	for rows.Next() {
		var x topDay
		if err := rows.Scan(&x.kind, &x.d); err != nil {
			return nil, err
		}
		days = append(days, x)
	}
	return days, rows.Err()
}

// trimTop keeps at most cap keys per day and kind in decision_top, in tx.
func (l *Log) trimTop(ctx context.Context, tx *sql.Tx) error {
	days, err := l.overCap(ctx, tx)
	if err != nil {
		return err
	}
	for _, x := range days {
		if err := l.trimDay(ctx, tx, x); err != nil {
			return err
		}
	}
	return nil
}

// trimDay keeps a day's cap largest counts of a kind, and adds what it deletes to
// decision_top_rest: the count and bytes, and the largest count and bytes deleted,
// which no key's loss exceeds.
func (l *Log) trimDay(ctx context.Context, tx *sql.Tx, x topDay) error {
	rows, err := tx.QueryContext(ctx, l.d.rebind(`DELETE FROM decision_top WHERE kind = ? AND d = ? AND k NOT IN
		(SELECT k FROM decision_top WHERE kind = ? AND d = ? ORDER BY n DESC, k LIMIT ?) RETURNING n, bytes`), x.kind, x.d, x.kind, x.d, l.cap())
	if err != nil {
		return fmt.Errorf("trim counters: %w", err)
	}
	var sum, maxes sums
	for rows.Next() {
		var s sums
		if err := rows.Scan(&s.n, &s.bytes); err != nil {
			rows.Close()
			return err
		}
		sum.n, sum.bytes = sum.n+s.n, sum.bytes+s.bytes
		maxes.n, maxes.bytes = max(maxes.n, s.n), max(maxes.bytes, s.bytes)
	}
	rows.Close()
	if err := rows.Err(); err != nil || sum.n == 0 {
		return err
	}
	_, err = tx.ExecContext(ctx, l.d.rebind(`INSERT INTO decision_top_rest (kind, d, n, bytes, err, err_bytes) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, d) DO UPDATE SET n = decision_top_rest.n + excluded.n, bytes = decision_top_rest.bytes + excluded.bytes,
		err = decision_top_rest.err + excluded.err, err_bytes = decision_top_rest.err_bytes + excluded.err_bytes`),
		x.kind, x.d, sum.n, sum.bytes, maxes.n, maxes.bytes)
	if err != nil {
		return fmt.Errorf("trim counters: %w", err)
	}
	return nil
}

// trimCounters trims the top lists' daily counters to their cap (Optimize does it every
// hour), a transaction per day and kind: the first trim of a log written before the cap
// has a year of days to trim, and the writer waits for none of them long.
func (l *Log) trimCounters(ctx context.Context) error {
	days, err := l.overCap(ctx, l.db)
	if err != nil {
		return err
	}
	for i, x := range days {
		err := func() error {
			tx, err := l.db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if l.d.postgres {
				if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.Itoa(rollupLock)+")"); err != nil {
					return err
				}
			}
			if err := l.trimDay(ctx, tx, x); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			return err
		}
		if i < len(days)-1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// subtractTop removes pruned records from decision_top: from their key's counter as far
// as it goes (a key trimmed earlier in the day holds less than its records), the rest
// from the day's decision_top_rest. The days before gone have no record left: their counters go.
func (l *Log) subtractTop(ctx context.Context, tx *sql.Tx, top map[topKey]sums, gone int64) error {
	keys := make([]topKey, 0, len(top))
	for k, s := range top {
		if s.n != 0 || s.bytes != 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b topKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.d, b.d), strings.Compare(a.k, b.k))
	})
	lock := ""
	if l.d.postgres {
		lock = " FOR UPDATE"
	}
	get, err := tx.PrepareContext(ctx, l.d.rebind("SELECT n, bytes FROM decision_top WHERE kind = ? AND d = ? AND k = ?"+lock))
	if err != nil {
		return err
	}
	defer get.Close()
	set, err := tx.PrepareContext(ctx, l.d.rebind("UPDATE decision_top SET n = ?, bytes = ? WHERE kind = ? AND d = ? AND k = ?"))
	if err != nil {
		return err
	}
	defer set.Close()
	del, err := tx.PrepareContext(ctx, l.d.rebind("DELETE FROM decision_top WHERE kind = ? AND d = ? AND k = ?"))
	if err != nil {
		return err
	}
	defer del.Close()
	type day struct {
		kind int
		d    int64
	}
	rest := map[day]sums{}
	for _, k := range keys {
		take := sums{-top[k].n, -top[k].bytes} // what the pruned records counted
		var have sums
		err := get.QueryRowContext(ctx, k.kind, k.d, k.k).Scan(&have.n, &have.bytes)
		if err != nil && err != sql.ErrNoRows {
			return err
		}
		var from sums // what comes off the key's counter
		switch {
		case err == sql.ErrNoRows: // trimmed: all from the rest
			err = nil
		case have.n <= take.n:
			from = have
			_, err = del.ExecContext(ctx, k.kind, k.d, k.k)
		default:
			from = sums{take.n, min(have.bytes, take.bytes)}
			_, err = set.ExecContext(ctx, have.n-from.n, have.bytes-from.bytes, k.kind, k.d, k.k)
		}
		if err != nil {
			return err
		}
		if left := (sums{max(take.n-from.n, 0), max(take.bytes-from.bytes, 0)}); left.n > 0 || left.bytes > 0 {
			r := rest[day{k.kind, k.d}]
			rest[day{k.kind, k.d}] = sums{r.n + left.n, r.bytes + left.bytes}
		}
	}
	days := slices.Collect(maps.Keys(rest))
	slices.SortFunc(days, func(a, b day) int { return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.d, b.d)) })
	for _, x := range days {
		r := rest[x]
		if _, err := tx.ExecContext(ctx, l.d.rebind("UPDATE decision_top_rest SET n = n - ?, bytes = bytes - ? WHERE kind = ? AND d = ?"),
			r.n, r.bytes, x.kind, x.d); err != nil {
			return err
		}
	}
	// A day's rest (and its bound) stays until the day has no record left: which of
	// a trimmed key's pruned records its counter held is not known, so only the end
	// of the day makes its lists exact again.
	for _, t := range []string{"decision_top", "decision_top_rest"} {
		if _, err := tx.ExecContext(ctx, l.d.rebind("DELETE FROM "+t+" WHERE kind IN (0, 1, 2) AND d < ?"), gone); err != nil {
			return err
		}
	}
	return nil
}

// rollupRange reports whether the counters answer f: an admin's scope, no narrowing
// (but Blocked, which the caller's counters require when blocked is true), and time
// bounds on whole units of unit microseconds; it returns the bounds in units ([lo, hi),
// hi 0 when none).
func (l *Log) rollupRange(ctx context.Context, f Filter, unit int64, blocked bool) (lo, hi int64, ok bool) {
	if l.noRollups || !f.Scope.All || f.Blocked != blocked || !l.RollupsReady(ctx) {
		return 0, 0, false
	}
	g := f
	g.Scope, g.Since, g.Until, g.Sort, g.Limit, g.Cursor, g.Blocked = Scope{}, time.Time{}, time.Time{}, 0, 0, "", false
	if !reflect.ValueOf(g).IsZero() {
		return 0, 0, false
	}
	if !f.Since.IsZero() {
		us := micros(f.Since)
		if us < 0 || us%unit != 0 {
			return 0, 0, false
		}
		lo = us / unit
	}
	if !f.Until.IsZero() {
		us := micros(f.Until)
		if us <= 0 || us%unit != 0 {
			return 0, 0, false
		}
		hi = us / unit
	}
	return lo, hi, true
}

// rangeSQL is the condition of [lo, hi) on column col.
func rangeSQL(col string, lo, hi int64) (string, []any) {
	if hi == 0 {
		return col + " >= ?", []any{lo}
	}
	return col + " >= ? AND " + col + " < ?", []any{lo, hi}
}

// hourBucket is the SQL of the bucket of an hour number h.
func (b Bucket) hourExpr() string {
	switch b {
	case Hour:
		return "h"
	case Week:
		return "((h / 24 + 3) / 7)"
	}
	return "(h / 24)"
}
