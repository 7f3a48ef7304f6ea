package decisionlog

import (
	"context"
	"strconv"
	"time"
)

// SetRollups turns the charts' counters on or off for the aggregations (tests compare
// them with the records).
func (l *Log) SetRollups(on bool) { l.noRollups = !on }

// SetTopCap sets the most keys a day keeps per kind in the top lists' counters.
func (l *Log) SetTopCap(n int) { l.rollup.topCap = n }

// SetBuildChunk sets how many records a step of the counters' build counts, and returns
// a function that restores it.
func SetBuildChunk(n int64) func() {
	old := buildChunk
	buildChunk = n
	return func() { buildChunk = old }
}

// NoBackgroundBuild makes Open leave the counters' build to BuildStep, and returns a
// function that restores it.
func NoBackgroundBuild() func() {
	noBackgroundBuild.Store(true)
	return func() { noBackgroundBuild.Store(false) }
}

// BuildStep runs one step of the counters' build and reports whether it is done.
func (l *Log) BuildStep(ctx context.Context) (bool, error) {
	done, err := l.buildStep(ctx)
	if done && err == nil {
		l.rollup.built.Store(true)
	}
	return done, err
}

// TrimCounters trims the top lists' counters to their cap, as Optimize does.
func (l *Log) TrimCounters(ctx context.Context) error { return l.trimCounters(ctx) }

// RebuildRollups builds the counters again from the records, as the first open of a log
// without them does, and waits for the build.
func (l *Log) RebuildRollups(ctx context.Context) error {
	if _, err := l.db.ExecContext(ctx, "DELETE FROM decision_meta WHERE k IN ('rollups', 'rollups_floor', 'rollups_built')"); err != nil {
		return err
	}
	l.rollup.built.Store(false)
	if err := l.createSchema(ctx); err != nil {
		return err
	}
	for !l.rollup.built.Load() {
		if _, err := l.BuildStep(ctx); err != nil {
			return err
		}
	}
	return nil
}

// CounterRows is how many counters the charts' tables hold.
func (l *Log) CounterRows(ctx context.Context) (int64, error) {
	var n int64
	err := l.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM decision_hours) + (SELECT COUNT(*) FROM decision_scores)
		+ (SELECT COUNT(*) FROM decision_top) + (SELECT COUNT(*) FROM decision_top_rest)`).Scan(&n)
	return n, err
}

// StartRebuild forgets the counters as a log written before they existed has none, and
// starts their build as Open does, without running it (BuildStep does).
func (l *Log) StartRebuild(ctx context.Context) error {
	if _, err := l.db.ExecContext(ctx, "DELETE FROM decision_meta WHERE k IN ('rollups', 'rollups_floor', 'rollups_built')"); err != nil {
		return err
	}
	l.rollup.built.Store(false)
	return l.createSchema(ctx)
}

// BuildProgress is the build's floor and how far it came.
func (l *Log) BuildProgress(ctx context.Context) (floor, built int64, err error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	s, err := l.readState(ctx, tx, "")
	return s.floor, s.built, err
}

// RollDays sums the hourly counters of the days before today's into daily counters, as
// Optimize does with the clock's day.
func (l *Log) RollDays(ctx context.Context, today time.Time) error {
	return l.rollDays(ctx, micros(today)/usDay)
}

// DaysRolled is the first day not rolled into daily counters, and how many daily
// counters there are.
func (l *Log) DaysRolled(ctx context.Context) (time.Time, int64, error) {
	var v string
	var n int64
	err := l.db.QueryRowContext(ctx, `SELECT (SELECT v FROM decision_meta WHERE k = 'days_rolled'),
		(SELECT COUNT(*) FROM decision_days) + (SELECT COUNT(*) FROM decision_score_days)`).Scan(&v, &n)
	if err != nil {
		return time.Time{}, 0, err
	}
	d, err := strconv.ParseInt(v, 10, 64)
	return fromMicros(d * usDay), n, err
}

// ExecSQL runs a statement in the log's store (tests tamper with the counters).
func (l *Log) ExecSQL(ctx context.Context, q string, args ...any) error {
	_, err := l.db.ExecContext(ctx, l.d.rebind(q), args...)
	return err
}

// BuildRollups runs the background build of the counters to its end, in the caller's
// goroutine.
func (l *Log) BuildRollups(ctx context.Context) { l.buildRollups(ctx) }
