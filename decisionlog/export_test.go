package decisionlog

import "context"

// SetRollups turns the charts' counters on or off for the aggregations (tests compare
// them with the records).
func (l *Log) SetRollups(on bool) { l.noRollups = !on }

// RebuildRollups builds the counters again from the records, as the first open of a log
// without them does.
func (l *Log) RebuildRollups(ctx context.Context) error {
	if _, err := l.db.ExecContext(ctx, "DELETE FROM decision_meta WHERE k = 'rollups'"); err != nil {
		return err
	}
	return l.createSchema(ctx)
}

// CounterRows is how many counters the charts' tables hold.
func (l *Log) CounterRows(ctx context.Context) (int64, error) {
	var n int64
	err := l.db.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM decision_hours) + (SELECT COUNT(*) FROM decision_scores) + (SELECT COUNT(*) FROM decision_top)").Scan(&n)
	return n, err
}
