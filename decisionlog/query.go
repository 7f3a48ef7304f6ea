package decisionlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

var selectCols = "id, " + strings.Join(columns, ", ")

// Query returns one page of the records f selects, in f.Sort order, and the cursor of the
// next page ("" when this is the last).
func (l *Log) Query(ctx context.Context, f Filter) ([]Record, Cursor, error) {
	q, err := f.build(l.d)
	if err != nil {
		return nil, "", err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	col, desc, key := f.Sort.order()
	cur, err := f.Cursor.decode()
	if err != nil {
		return nil, "", err
	}
	cmp, dir := ">", "ASC"
	if desc {
		cmp, dir = "<", "DESC"
	}
	digest := searchDigest(q, col, dir)
	if cur != nil && cur.F != digest {
		return nil, "", fmt.Errorf("%w: the cursor belongs to another search", ErrBadFilter)
	}
	if cur != nil {
		var k any = int64(cur.K)
		if col == "score" {
			k = cur.K
		}
		q.add("("+col+" "+cmp+" ? OR ("+col+" = ? AND id "+cmp+" ?))", k, k, cur.I)
	}
	s := "SELECT " + selectCols + " FROM decisions WHERE " + q.sql() +
		" ORDER BY " + col + " " + dir + ", id " + dir + " LIMIT " + fmt.Sprint(limit+1)
	rows, err := l.db.QueryContext(ctx, l.d.rebind(s), q.args...)
	if err != nil {
		return nil, "", fmt.Errorf("decisionlog: query %s: %w", l.where(), err)
	}
	recs, err := scanAll(rows)
	if err != nil {
		return nil, "", fmt.Errorf("decisionlog: query %s: %w", l.where(), err)
	}
	var next Cursor
	if len(recs) > limit {
		recs = recs[:limit]
		last := recs[limit-1]
		next = cursor{K: key(last), I: last.ID, F: digest}.encode()
	}
	return recs, next, nil
}

// Get returns the record id if scope may see it, or ErrNotFound.
func (l *Log) Get(ctx context.Context, scope Scope, id int64) (Record, error) {
	q := &query{pg: l.d.postgres}
	q.scope(scope)
	q.add("id = ?", id)
	rows, err := l.db.QueryContext(ctx, l.d.rebind("SELECT "+selectCols+" FROM decisions WHERE "+q.sql()), q.args...)
	if err != nil {
		return Record{}, fmt.Errorf("decisionlog: get %d: %w", id, err)
	}
	recs, err := scanAll(rows)
	if err != nil {
		return Record{}, fmt.Errorf("decisionlog: get %d: %w", id, err)
	}
	if len(recs) == 0 {
		return Record{}, ErrNotFound
	}
	return recs[0], nil
}

func scanAll(rows *sql.Rows) ([]Record, error) {
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var t, ot int64
		var ip []byte
		var senderDom, rcptDom, pol, flagged, tags string
		if err := rows.Scan(&r.ID, &t, &r.Session, &r.Txn, &r.Listener, &ip, &r.ClientName, &r.HELO, &r.AuthUser,
			&r.Sender, &senderDom, &r.Recipient, &rcptDom, &r.From, &r.Subject,
			&r.MessageID, &r.Size, &r.Stage, &r.Verdict, &r.Reply, &r.Rule, &r.Category, &pol,
			&flagged, &r.Score, &tags, &r.QueueID, &r.Outcome, &r.OutcomeReason, &ot,
			&r.Relay, &r.DSN, &r.Deferrals); err != nil {
			return nil, err
		}
		r.Time, r.OutcomeTime, r.ClientIP = fromMicros(t), fromMicros(ot), ipFromBytes(ip)
		if pol != "" {
			if err := json.Unmarshal([]byte(pol), &r.Policies); err != nil {
				return nil, fmt.Errorf("record %d: policies: %w", r.ID, err)
			}
		}
		if tags != "" {
			if err := json.Unmarshal([]byte(tags), &r.Tags); err != nil {
				return nil, fmt.Errorf("record %d: tags: %w", r.ID, err)
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// pruneBatch is how many records one prune statement deletes: small enough that the
// writer never waits long for the database.
const pruneBatch = 2000

// Prune deletes the records older than before, in small batches, and returns how many
// it deleted. Each batch subtracts its records from the charts' counters in the same
// transaction.
func (l *Log) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		n, err := l.pruneBatch(ctx, micros(before))
		if err != nil {
			return total, fmt.Errorf("decisionlog: prune %s: %w", l.where(), err)
		}
		total += n
		l.m.pruned.Add(float64(n))
		if n < pruneBatch {
			return total, nil
		}
		// let the writer in between batches
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (l *Log) pruneBatch(ctx context.Context, before int64) (int64, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	cnt, err := l.counterState(ctx, tx) // which records the counters count
	if err != nil {
		return 0, err
	}
	lock := ""
	if l.d.postgres {
		lock = " FOR UPDATE" // against an outcome moving the same record's count
	}
	rows, err := tx.QueryContext(ctx, l.d.rebind(`SELECT id, t, category, verdict, outcome, recipient, size, score, sender, sender_domain, client_ip
		FROM decisions WHERE t < ? ORDER BY t LIMIT `+fmt.Sprint(pruneBatch)+lock), before)
	if err != nil {
		return 0, err
	}
	ds := newDeltas()
	var ids []int64
	var tmax int64
	for rows.Next() {
		var id int64
		var c counted
		var ip []byte
		if err := rows.Scan(&id, &c.t, &c.category, &c.verdict, &c.outcome, &c.rcpt, &c.size, &c.score, &c.sender, &c.senderDomain, &ip); err != nil {
			rows.Close()
			return 0, err
		}
		c.clientHex = clientHex(ip)
		if cnt.counts(id) {
			ds.add(c, -1)
		}
		ids = append(ids, id)
		tmax = max(tmax, c.t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if l.d.postgres {
		_, err = tx.ExecContext(ctx, "DELETE FROM decisions WHERE id = ANY($1)", ids)
	} else {
		b, _ := json.Marshal(ids)
		_, err = tx.ExecContext(ctx, "DELETE FROM decisions WHERE id IN (SELECT value FROM json_each(?))", string(b))
	}
	if err != nil {
		return 0, err
	}
	// The top lists' counters may have been trimmed: they are subtracted apart. Every
	// record before the batch's newest is gone (they go in order of time), and when the
	// batch was the last one, every record before the bound.
	top := ds.top
	ds.top = map[topKey]sums{}
	if err := l.apply(ctx, sqlExec(tx), ds); err != nil {
		return 0, err
	}
	gone := tmax / usDay
	if len(ids) < pruneBatch {
		gone = max(gone, before/usDay)
	}
	if err := l.subtractTop(ctx, tx, top, gone); err != nil {
		return 0, err
	}
	return int64(len(ids)), tx.Commit()
}

func (l *Log) pruner() {
	defer l.pruning.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// A log written before the charts' counters existed gets them first, in the
	// background; pruning waits for them.
	if !noBackgroundBuild.Load() {
		l.buildRollups(ctx)
	}
	first := time.NewTimer(time.Minute)
	defer first.Stop()
	tick := time.NewTicker(l.cfg.PruneInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-first.C:
		case <-tick.C:
		}
		var n int64
		var err error
		if l.cfg.Retention >= 0 {
			n, err = l.Prune(ctx, time.Now().Add(-l.cfg.Retention))
		}
		if err == nil {
			err = l.Optimize(ctx)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			l.log.Error("decision log: prune", "err", err)
		} else if n > 0 {
			l.log.Info("decision log: pruned", "records", n, "retention", l.cfg.Retention)
		}
	}
}

// Optimize brings the query planner's statistics up to date (SQLite's PRAGMA optimize,
// PostgreSQL's ANALYZE of the table): without them a planner may walk the time index
// for a rare domain instead of the domain's index; it sums the completed days' hourly
// counters into daily ones (days.go), and trims the top lists' daily counters to their
// cap. The pruner runs it every hour; run it after a bulk import. The three steps are
// independent: one failing (a roll waiting out a lock) does not skip the others for the
// hour; their errors are joined.
func (l *Log) Optimize(ctx context.Context) error {
	var errs []error
	if err := l.rollDays(ctx, time.Now().UnixMicro()/usDay); err != nil {
		errs = append(errs, err)
	}
	if err := l.trimCounters(ctx); err != nil {
		errs = append(errs, fmt.Errorf("decisionlog: trim counters %s: %w", l.where(), err))
	}
	q := "PRAGMA optimize"
	if l.d.postgres {
		q = "ANALYZE decisions"
	}
	if _, err := l.db.ExecContext(ctx, q); err != nil {
		errs = append(errs, fmt.Errorf("decisionlog: optimize %s: %w", l.where(), err))
	}
	return errors.Join(errs...)
}
