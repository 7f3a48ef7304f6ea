package decisionlog

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Daily counters. The day and week figures of the admin's charts summed the hourly
// counters: 84 days × 24 hours × a dozen keys for the weekly figure, 600–900 ms of the
// page at ten million records in SQLite. decision_days and decision_score_days hold the
// same counters summed per UTC day, for every day before a bound (meta "days_rolled",
// a day number): a month reads 30 rows per key instead of 720.
//
// Invariant: for every day d below the bound, decision_days holds exactly the sums of
// decision_hours over d's 24 hours (decision_score_days those of decision_scores).
//
//   - The roll (Optimize, hourly, and the end of the counters' build) sums the hourly
//     counters of the completed days from the bound up to today and moves the bound,
//     in one transaction; the writer is not involved (no write per record).
//   - Whatever changes an hourly counter of a day below the bound later — an outcome
//     arriving after midnight, a deferral's final outcome days later, a record held
//     past midnight, a prune, a rebuild — changes the day's counter by the same amount
//     in the same statement: a trigger on decision_hours and decision_scores whose WHEN
//     is the bound itself (as an hour number), so that today's counters, the writer's
//     usual work, do not even call it. The roll recreates the triggers with the new
//     bound in its transaction; in PostgreSQL it takes the tables' SHARE ROW
//     EXCLUSIVE lock first, so that no writer changes an hourly counter between the
//     roll's look for the first day to sum, its sums and its commit (writers wait for
//     the roll's few milliseconds; readers do not).
//   - The daily counters are never written by the per-record code, which stays as it
//     was; the write path pays one comparison per counter row it writes.
//
// A reader takes the rolled days from decision_days and the rest (today, the days not
// yet rolled, the hours of a bound inside a day) from decision_hours, in one statement,
// so that a roll between two reads cannot count a day twice or not at all.

const daysKey = "days_rolled"

// rollChunk is how many days one transaction of the roll sums: the first roll of a
// year's counters is a dozen transactions of a few tens of thousands of hourly rows.
const rollChunk = 31

// noDay is a day past any record's: the end of a range without one.
const noDay = int64(1) << 40

// daysBoundSQL is the bound (the first day not rolled) as an SQL expression.
func (d dialect) daysBoundSQL() string {
	return "COALESCE((SELECT CAST(v AS BIGINT) FROM decision_meta WHERE k = '" + daysKey + "'), 0)"
}

func (d dialect) greatest() string {
	if d.postgres {
		return "GREATEST"
	}
	return "MAX"
}

func (d dialect) least() string {
	if d.postgres {
		return "LEAST"
	}
	return "MIN"
}

// counterTable is one hourly counters' table and its daily one.
type counterTable struct {
	hours, days, cols string
}

var (
	hourCounters  = counterTable{"decision_hours", "decision_days", "category, verdict, outcome, conn, n, bytes"}
	scoreCounters = counterTable{"decision_scores", "decision_score_days", "bin, n"}
)

// counterRows is the FROM source of an aggregation of c's counters over the hours
// [lo, hi) (hi 0: no end) in buckets of b: a derived table of h (an hour; a rolled day
// reads as its first hour) and c's columns. A whole day below the bound comes from the
// daily counters; the rest, and every hour of Hour buckets, from the hourly ones.
func (l *Log) counterRows(c counterTable, b Bucket, lo, hi int64) (string, []any) {
	end := hi
	if end == 0 {
		end = noDay * 24
	}
	dlo, dhi := (lo+23)/24, end/24 // the whole days of the range
	if b == Hour || dhi <= dlo {
		return "(SELECT h, " + c.cols + " FROM " + c.hours + " WHERE h >= ? AND h < ?) AS c", []any{lo, end}
	}
	bound := l.d.daysBoundSQL()
	parts := []string{"SELECT d * 24 AS h, " + c.cols + " FROM " + c.days + " WHERE d >= ? AND d < ? AND d < " + bound}
	args := []any{dlo, dhi}
	if lo < dlo*24 { // the hours before the first whole day
		parts = append(parts, "SELECT h, "+c.cols+" FROM "+c.hours+" WHERE h >= ? AND h < ?")
		args = append(args, lo, dlo*24)
	}
	// the hours from the first whole day not rolled (or after the whole days) on
	parts = append(parts, "SELECT h, "+c.cols+" FROM "+c.hours+" WHERE h >= (SELECT "+l.d.greatest()+"(?, "+l.d.least()+"(?, "+bound+")) * 24) AND h < ?")
	args = append(args, dlo, dhi, end)
	return "(" + strings.Join(parts, " UNION ALL ") + ") AS c", args
}

// daysRolled reads the bound in tx.
func (l *Log) daysRolled(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v string
	err := tx.QueryRowContext(ctx, "SELECT v FROM decision_meta WHERE k = '"+daysKey+"'").Scan(&v)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// setDaysRolled records the bound and recreates the triggers with it, in tx.
func (l *Log) setDaysRolled(ctx context.Context, tx *sql.Tx, day int64) error {
	_, err := tx.ExecContext(ctx, l.d.rebind("INSERT INTO decision_meta (k, v) VALUES ('"+daysKey+"', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"),
		strconv.FormatInt(day, 10))
	if err != nil {
		return fmt.Errorf("daily counters: %w", err)
	}
	if _, err := tx.ExecContext(ctx, l.d.dayTriggers(day*24)); err != nil {
		return fmt.Errorf("daily counters' triggers: %w", err)
	}
	return nil
}

// dayTriggers is the DDL of the triggers that carry a change of an hourly counter below
// hour bound to its day's counter.
func (d dialect) dayTriggers(bound int64) string {
	b := strconv.FormatInt(bound, 10)
	if d.postgres {
		var s strings.Builder
		for _, t := range []struct{ table, fn string }{{"decision_hours", "decision_hours_to_days"}, {"decision_scores", "decision_scores_to_days"}} {
			for _, x := range []struct{ name, event, when string }{
				{"ins", "INSERT", "NEW.h < " + b},
				{"upd", "UPDATE", "OLD.h < " + b + " OR NEW.h < " + b},
				{"del", "DELETE", "OLD.h < " + b},
			} {
				fmt.Fprintf(&s, "CREATE OR REPLACE TRIGGER %s_days_%s AFTER %s ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s('%s');\n",
					t.table, x.name, x.event, t.table, x.when, t.fn, b)
			}
		}
		return s.String()
	}
	hours := func(r, sign string) string {
		return "INSERT INTO decision_days (d, category, verdict, outcome, conn, n, bytes) SELECT " + r + ".h / 24, " + r + ".category, " + r + ".verdict, " +
			r + ".outcome, " + r + ".conn, " + sign + r + ".n, " + sign + r + ".bytes WHERE " + r + ".h < " + b +
			" ON CONFLICT (d, category, verdict, outcome, conn) DO UPDATE SET n = n + excluded.n, bytes = bytes + excluded.bytes;"
	}
	scores := func(r, sign string) string {
		return "INSERT INTO decision_score_days (d, bin, n) SELECT " + r + ".h / 24, " + r + ".bin, " + sign + r + ".n WHERE " + r + ".h < " + b +
			" ON CONFLICT (d, bin) DO UPDATE SET n = n + excluded.n;"
	}
	var s strings.Builder
	for _, t := range []struct {
		table string
		add   func(r, sign string) string
	}{{"decision_hours", hours}, {"decision_scores", scores}} {
		fmt.Fprintf(&s, `DROP TRIGGER IF EXISTS %[1]s_days_ins; DROP TRIGGER IF EXISTS %[1]s_days_upd; DROP TRIGGER IF EXISTS %[1]s_days_del;
CREATE TRIGGER %[1]s_days_ins AFTER INSERT ON %[1]s WHEN NEW.h < %[2]s BEGIN %[3]s END;
CREATE TRIGGER %[1]s_days_upd AFTER UPDATE ON %[1]s WHEN OLD.h < %[2]s OR NEW.h < %[2]s BEGIN %[4]s %[3]s END;
CREATE TRIGGER %[1]s_days_del AFTER DELETE ON %[1]s WHEN OLD.h < %[2]s BEGIN %[4]s END;
`, t.table, b, t.add("NEW", ""), t.add("OLD", "-"))
	}
	return s.String()
}

// openDays makes sure the bound exists and recreates the triggers from it, in Open's
// transaction (which holds the schema's lock): idempotent, and a store whose triggers
// were dropped by hand is consistent again before anything is written. Lock order in
// PostgreSQL: the schema's advisory lock, the roll's, then the hourly tables (the
// triggers' recreation), as the roll and the build take them; a writer takes the
// records' table before the hourly counters, and no advisory lock.
func (l *Log) openDays(ctx context.Context, tx *sql.Tx) error {
	if l.d.postgres {
		// a roll of another node between the read of the bound and the triggers'
		// creation would leave them with the old bound
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.Itoa(rollupLock)+")"); err != nil {
			return err
		}
	}
	b, err := l.daysRolled(ctx, tx)
	if err != nil {
		return fmt.Errorf("daily counters: %w", err)
	}
	return l.setDaysRolled(ctx, tx, b)
}

// resetDays forgets the daily counters (the next roll sums them again), in tx: the
// counters are being built again from the records, or may be stale.
func (l *Log) resetDays(ctx context.Context, tx *sql.Tx) error {
	if l.d.postgres {
		// every change of the bound holds the roll's lock
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.Itoa(rollupLock)+")"); err != nil {
			return err
		}
	}
	if err := l.setDaysRolled(ctx, tx, 0); err != nil {
		return err
	}
	for _, s := range []string{"DELETE FROM decision_days", "DELETE FROM decision_score_days"} {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("daily counters: %w", err)
		}
	}
	return nil
}

// rollDays sums the hourly counters of the completed days before today into the daily
// counters, rollChunk days per transaction. It does nothing until the counters are
// built (a roll of days still being built would make every chunk of the build pass
// through the triggers).
func (l *Log) rollDays(ctx context.Context, today int64) error {
	if !l.RollupsReady(ctx) {
		return nil
	}
	for {
		done, err := l.rollStep(ctx, today)
		if err != nil {
			return fmt.Errorf("decisionlog: daily counters %s: %w", l.where(), err)
		}
		if done {
			break
		}
		// let the writer in between chunks
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Daily counters that fell to zero (their records pruned) go, as the hourly ones
	// do when they fall. A trigger adding to one concurrently is safe: PostgreSQL's
	// upsert waits for the delete and inserts the row again.
	for _, s := range []string{"DELETE FROM decision_days WHERE n = 0 AND bytes = 0", "DELETE FROM decision_score_days WHERE n = 0"} {
		if _, err := l.db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("decisionlog: daily counters %s: %w", l.where(), err)
		}
	}
	return nil
}

// rollStep rolls the next chunk of days and reports whether the bound reached today.
func (l *Log) rollStep(ctx context.Context, today int64) (bool, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if l.d.postgres {
		// one node rolls at a time (the build's and trim's lock)
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.Itoa(rollupLock)+")"); err != nil {
			return false, err
		}
	}
	b, err := l.daysRolled(ctx, tx)
	if err != nil {
		return false, err
	}
	if b >= today {
		return true, nil
	}
	if l.d.postgres {
		// The writers' lock, before the first counted day is looked for below: a
		// writer in the middle of its transaction may be adding the first hourly
		// counter of a day before it (a record held past midnight on a quiet log),
		// which that look, in READ COMMITTED, does not see; the bound would jump
		// over the day, and its later commit fire no trigger. The triggers'
		// recreation takes the same lock, in the same order (hours, then scores,
		// as the writer's apply does).
		if _, err := tx.ExecContext(ctx, "LOCK TABLE decision_hours, decision_scores IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return false, err
		}
	}
	// The days before the first hourly counter have nothing to sum: the bound jumps
	// over them (a year-old log's first roll does not walk from 1970).
	var first sql.NullInt64
	if err := tx.QueryRowContext(ctx, l.d.rebind("SELECT MIN(h) FROM decision_hours WHERE h >= ?"), b*24).Scan(&first); err != nil {
		return false, err
	}
	var firstScore sql.NullInt64
	if err := tx.QueryRowContext(ctx, l.d.rebind("SELECT MIN(h) FROM decision_scores WHERE h >= ?"), b*24).Scan(&firstScore); err != nil {
		return false, err
	}
	from := today
	if first.Valid {
		from = min(from, first.Int64/24)
	}
	if firstScore.Valid {
		from = min(from, firstScore.Int64/24)
	}
	from = max(from, b)
	to := min(from+rollChunk, today)
	// First the triggers with the new bound: in PostgreSQL this waits for the
	// writers that changed the hourly counters and keeps new ones out until the
	// commit, so that the sums below are the hourly counters' at the commit.
	if err := l.setDaysRolled(ctx, tx, to); err != nil {
		return false, err
	}
	for _, s := range []string{
		"DELETE FROM decision_days WHERE d >= ?", // none, unless a crash of an older version left some
		"DELETE FROM decision_score_days WHERE d >= ?",
	} {
		if _, err := tx.ExecContext(ctx, l.d.rebind(s), b); err != nil {
			return false, err
		}
	}
	for _, s := range []string{
		`INSERT INTO decision_days (d, category, verdict, outcome, conn, n, bytes)
		SELECT h / 24, category, verdict, outcome, conn, SUM(n), SUM(bytes) FROM decision_hours WHERE h >= ? AND h < ?
		GROUP BY h / 24, category, verdict, outcome, conn`,
		`INSERT INTO decision_score_days (d, bin, n) SELECT h / 24, bin, SUM(n) FROM decision_scores WHERE h >= ? AND h < ? GROUP BY h / 24, bin`,
	} {
		if _, err := tx.ExecContext(ctx, l.d.rebind(s), from*24, to*24); err != nil {
			return false, err
		}
	}
	return to >= today, tx.Commit()
}
