package decisionlog

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
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
//     records' count and bytes: Top of blocked senders, domains and clients.
//
// Outcome updates move a record's count from its old outcome to its new one; pruning
// subtracts what it deletes. A filter the counters cannot answer (a user's scope, any
// narrowing, a time bound inside an hour) reads the records as before. The counters are
// built from the records on the first open that finds them missing (the meta key
// "rollups").
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
`
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

// backfill builds the counters from the records when the store has none yet (a log
// written before they existed), in the caller's transaction.
func (l *Log) backfill(ctx context.Context, tx *sql.Tx) error {
	var v string
	err := tx.QueryRowContext(ctx, "SELECT v FROM decision_meta WHERE k = 'rollups'").Scan(&v)
	if err == nil {
		return nil
	}
	if err != sql.ErrNoRows {
		return err
	}
	blocked := "verdict IN ('reject', 'tempfail', 'discard', 'quarantine')"
	hexIP := "hex(client_ip)"
	if l.d.postgres {
		hexIP = `upper(encode(client_ip, 'hex'))`
	}
	for _, s := range []string{
		"DELETE FROM decision_hours", "DELETE FROM decision_scores", "DELETE FROM decision_top",
		fmt.Sprintf(`INSERT INTO decision_hours (h, category, verdict, outcome, conn, n, bytes)
			SELECT t / %d, category, verdict, outcome, CASE WHEN recipient = '' THEN 1 ELSE 0 END, COUNT(*), SUM(size)
			FROM decisions GROUP BY 1, 2, 3, 4, 5`, usHour),
		fmt.Sprintf(`INSERT INTO decision_scores (h, bin, n) SELECT t / %d, %s, COUNT(*) FROM decisions
			WHERE recipient <> '' GROUP BY 1, 2`, usHour, l.d.floorDiv("score", 1)),
		fmt.Sprintf(`INSERT INTO decision_top (kind, d, k, n, bytes) SELECT %d, t / %d, sender, COUNT(*), SUM(size)
			FROM decisions WHERE %s GROUP BY 2, 3`, topKindSender, usDay, blocked),
		fmt.Sprintf(`INSERT INTO decision_top (kind, d, k, n, bytes) SELECT %d, t / %d, sender_domain, COUNT(*), SUM(size)
			FROM decisions WHERE %s GROUP BY 2, 3`, topKindSenderDomain, usDay, blocked),
		fmt.Sprintf(`INSERT INTO decision_top (kind, d, k, n, bytes) SELECT %d, t / %d, %s, COUNT(*), SUM(size)
			FROM decisions WHERE %s GROUP BY 2, 3`, topKindClient, usDay, hexIP, blocked),
		"INSERT INTO decision_meta (k, v) VALUES ('rollups', '1')",
	} {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("build counters: %w", err)
		}
	}
	return nil
}

// rollupRange reports whether the counters answer f: an admin's scope, no narrowing
// (but Blocked, which the caller's counters require when blocked is true), and time
// bounds on whole units of unit microseconds; it returns the bounds in units ([lo, hi),
// hi 0 when none).
func (l *Log) rollupRange(f Filter, unit int64, blocked bool) (lo, hi int64, ok bool) {
	if l.noRollups || !f.Scope.All || f.Blocked != blocked {
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
