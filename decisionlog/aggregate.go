package decisionlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"time"
)

// Bucket is the width of a time bucket in aggregations. Buckets are UTC.
type Bucket int

// The buckets.
const (
	Hour Bucket = iota
	Day
	Week // from Monday 00:00 UTC
)

const (
	usHour = int64(time.Hour / time.Microsecond)
	usDay  = 24 * usHour
)

// expr returns the SQL of the bucket number of column t, and the start of bucket n.
func (b Bucket) expr() (string, func(n int64) time.Time) {
	switch b {
	case Hour:
		return fmt.Sprintf("(t / %d)", usHour), func(n int64) time.Time { return fromMicros(n * usHour) }
	case Week:
		// 1970-01-01 was a Thursday: shift by three days so that weeks start on Monday.
		return fmt.Sprintf("((t / %d + 3) / 7)", usDay), func(n int64) time.Time { return fromMicros((n*7 - 3) * usDay) }
	}
	return fmt.Sprintf("(t / %d)", usDay), func(n int64) time.Time { return fromMicros(n * usDay) }
}

// CategoryCount is the number of blocked records of one category in one bucket.
type CategoryCount struct {
	Start    time.Time
	Category string
	Count    int64
}

// BlockedByCategory counts, per bucket and category, the records f selects whose
// verdict blocked the mail (reject, tempfail, discard, quarantine): the "policies'
// efficiency" figure.
func (l *Log) BlockedByCategory(ctx context.Context, f Filter, b Bucket) ([]CategoryCount, error) {
	f.Blocked = true
	bx, start := b.expr()
	var rows *sql.Rows
	var err error
	if lo, hi, ok := l.rollupRange(ctx, f, usHour, true); ok {
		src, args := l.counterRows(hourCounters, b, lo, hi) // days.go
		rows, err = l.db.QueryContext(ctx, l.d.rebind("SELECT "+b.hourExpr()+" AS b, category, SUM(n) FROM "+src+
			" WHERE verdict IN ('reject', 'tempfail', 'discard', 'quarantine') GROUP BY b, category HAVING SUM(n) > 0 ORDER BY b, category"), args...)
	} else {
		q, berr := f.build(l.d)
		if berr != nil {
			return nil, berr
		}
		rows, err = l.db.QueryContext(ctx, l.d.rebind("SELECT "+bx+" AS b, category, COUNT(*) FROM decisions WHERE "+
			q.sql()+" GROUP BY b, category ORDER BY b, category"), q.args...)
	}
	if err != nil {
		return nil, fmt.Errorf("decisionlog: blocked by category: %w", err)
	}
	defer rows.Close()
	var out []CategoryCount
	for rows.Next() {
		var n int64
		var c CategoryCount
		if err := rows.Scan(&n, &c.Category, &c.Count); err != nil {
			return nil, fmt.Errorf("decisionlog: blocked by category: %w", err)
		}
		c.Start = start(n)
		out = append(out, c)
	}
	return out, rows.Err()
}

// TrafficRow is one bucket of traffic. Received counts the transaction records (one per
// recipient); the verdict counts split them; the outcome counts are those of accepted
// mail; Connections counts connections refused before MAIL.
type TrafficRow struct {
	Start       time.Time
	Received    int64
	Accepted    int64
	Rejected    int64 // reject verdicts
	Tempfailed  int64
	Quarantined int64
	Discarded   int64
	Delivered   int64
	Deferred    int64
	Bounced     int64
	Connections int64
	Bytes       int64 // size of accepted mail
}

// Traffic counts the records f selects per bucket.
func (l *Log) Traffic(ctx context.Context, f Filter, b Bucket) ([]TrafficRow, error) {
	bx, start := b.expr()
	var rows *sql.Rows
	var err error
	if lo, hi, ok := l.rollupRange(ctx, f, usHour, false); ok {
		src, args := l.counterRows(hourCounters, b, lo, hi) // days.go
		rows, err = l.db.QueryContext(ctx, l.d.rebind("SELECT "+b.hourExpr()+` AS b,
		SUM(CASE WHEN conn = 0 THEN n ELSE 0 END),
		SUM(CASE WHEN conn = 0 AND verdict = 'accept' THEN n ELSE 0 END),
		SUM(CASE WHEN conn = 0 AND verdict = 'reject' THEN n ELSE 0 END),
		SUM(CASE WHEN conn = 0 AND verdict = 'tempfail' THEN n ELSE 0 END),
		SUM(CASE WHEN conn = 0 AND verdict = 'quarantine' THEN n ELSE 0 END),
		SUM(CASE WHEN conn = 0 AND verdict = 'discard' THEN n ELSE 0 END),
		SUM(CASE WHEN outcome = 'delivered' THEN n ELSE 0 END),
		SUM(CASE WHEN outcome = 'deferred' THEN n ELSE 0 END),
		SUM(CASE WHEN outcome = 'bounced' THEN n ELSE 0 END),
		SUM(CASE WHEN conn = 1 THEN n ELSE 0 END),
		SUM(CASE WHEN conn = 0 AND verdict = 'accept' THEN bytes ELSE 0 END)
		FROM `+src+" GROUP BY b HAVING SUM(n) > 0 ORDER BY b"), args...)
		if err != nil {
			return nil, fmt.Errorf("decisionlog: traffic: %w", err)
		}
	} else {
		q, berr := f.build(l.d)
		if berr != nil {
			return nil, berr
		}
		s := "SELECT " + bx + ` AS b,
		SUM(CASE WHEN recipient <> '' THEN 1 ELSE 0 END),
		SUM(CASE WHEN recipient <> '' AND verdict = 'accept' THEN 1 ELSE 0 END),
		SUM(CASE WHEN recipient <> '' AND verdict = 'reject' THEN 1 ELSE 0 END),
		SUM(CASE WHEN recipient <> '' AND verdict = 'tempfail' THEN 1 ELSE 0 END),
		SUM(CASE WHEN recipient <> '' AND verdict = 'quarantine' THEN 1 ELSE 0 END),
		SUM(CASE WHEN recipient <> '' AND verdict = 'discard' THEN 1 ELSE 0 END),
		SUM(CASE WHEN outcome = 'delivered' THEN 1 ELSE 0 END),
		SUM(CASE WHEN outcome = 'deferred' THEN 1 ELSE 0 END),
		SUM(CASE WHEN outcome = 'bounced' THEN 1 ELSE 0 END),
		SUM(CASE WHEN recipient = '' THEN 1 ELSE 0 END),
		SUM(CASE WHEN recipient <> '' AND verdict = 'accept' THEN size ELSE 0 END)
		FROM decisions WHERE ` + q.sql() + " GROUP BY b ORDER BY b"
		if rows, err = l.db.QueryContext(ctx, l.d.rebind(s), q.args...); err != nil {
			return nil, fmt.Errorf("decisionlog: traffic: %w", err)
		}
	}
	defer rows.Close()
	var out []TrafficRow
	for rows.Next() {
		var n int64
		var r TrafficRow
		if err := rows.Scan(&n, &r.Received, &r.Accepted, &r.Rejected, &r.Tempfailed, &r.Quarantined,
			&r.Discarded, &r.Delivered, &r.Deferred, &r.Bounced, &r.Connections, &r.Bytes); err != nil {
			return nil, fmt.Errorf("decisionlog: traffic: %w", err)
		}
		r.Start = start(n)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ScoreBin counts the transaction records whose score is in [Low, Low+width).
type ScoreBin struct {
	Low   float64
	Count int64
}

// ScoreHistogram counts the transaction records f selects by score, in bins of width
// (default 1).
func (l *Log) ScoreHistogram(ctx context.Context, f Filter, width float64) ([]ScoreBin, error) {
	// A width that is not a number, or so small that the bins would be countless, is
	// refused rather than written into the query.
	if math.IsNaN(width) || math.IsInf(width, 0) || width < 0 || (width > 0 && width < 0.01) {
		return nil, fmt.Errorf("%w: histogram width %v", ErrBadFilter, width)
	}
	if width == 0 {
		width = 1
	}
	var rows *sql.Rows
	var err error
	if lo, hi, ok := l.rollupRange(ctx, f, usHour, false); ok && width == 1 {
		src, args := l.counterRows(scoreCounters, Day, lo, hi) // days.go
		rows, err = l.db.QueryContext(ctx, l.d.rebind("SELECT bin, SUM(n) FROM "+src+" GROUP BY bin HAVING SUM(n) > 0 ORDER BY bin"), args...)
	} else {
		q, berr := f.build(l.d)
		if berr != nil {
			return nil, berr
		}
		q.add("recipient <> ''")
		rows, err = l.db.QueryContext(ctx, l.d.rebind("SELECT "+l.d.floorDiv("score", width)+
			" AS b, COUNT(*) FROM decisions WHERE "+q.sql()+" GROUP BY b ORDER BY b"), q.args...)
	}
	if err != nil {
		return nil, fmt.Errorf("decisionlog: score histogram: %w", err)
	}
	defer rows.Close()
	var out []ScoreBin
	for rows.Next() {
		var n int64
		var c int64
		if err := rows.Scan(&n, &c); err != nil {
			return nil, fmt.Errorf("decisionlog: score histogram: %w", err)
		}
		out = append(out, ScoreBin{Low: float64(n) * width, Count: c})
	}
	return out, rows.Err()
}

// TopKey is what Top groups by.
type TopKey int

// The keys of Top.
const (
	TopSender TopKey = iota
	TopRecipient
	TopSenderDomain
	TopRecipientDomain
	TopClient // the client's IP address
	TopClientName
	TopCategory
	TopRule
	TopReply
)

var topCols = map[TopKey]string{
	TopSender: "sender", TopRecipient: "recipient", TopSenderDomain: "sender_domain",
	TopRecipientDomain: "rcpt_domain", TopClient: "client_ip", TopClientName: "client_name",
	TopCategory: "category", TopRule: "rule", TopReply: "reply",
}

// TopEntry is one group of Top.
type TopEntry struct {
	Key   string
	Count int64
	Bytes int64
	// Approx is 0 when the list is exact. Otherwise the list was read from daily
	// counters that keep only each day's largest keys (the admin's top blocked senders,
	// domains and clients over a large log): a Count (Bytes, when by size) may be short
	// of the true one by up to Approx, and a key whose true figure exceeds the last
	// entry's by no more than Approx may be missing. Every entry carries the list's.
	Approx int64
}

// Top returns the n largest groups of the records f selects, by count (or by bytes when
// bySize), largest first. Use f.Blocked for "top blocked senders".
func (l *Log) Top(ctx context.Context, f Filter, key TopKey, n int, bySize bool) ([]TopEntry, error) {
	col, ok := topCols[key]
	if !ok {
		return nil, fmt.Errorf("%w: top key %d", ErrBadFilter, key)
	}
	if n <= 0 {
		n = 10
	}
	order := "c"
	if bySize {
		order = "s"
	}
	var rows *sql.Rows
	var err error
	rolled := false
	var approx int64
	if kind, ok := topKinds[key]; ok {
		var lo, hi int64
		if lo, hi, rolled = l.rollupRange(ctx, f, usDay, true); rolled {
			cond, args := rangeSQL("d", lo, hi)
			args = append([]any{kind}, args...)
			// the days trimmed to their largest keys bound the list's error
			errCol := "err"
			if bySize {
				errCol = "err_bytes"
			}
			if err := l.db.QueryRowContext(ctx, l.d.rebind("SELECT COALESCE(SUM("+errCol+"), 0) FROM decision_top_rest WHERE kind = ? AND "+cond),
				args...).Scan(&approx); err != nil {
				return nil, fmt.Errorf("decisionlog: top %s: %w", col, err)
			}
			k := "k"
			if l.d.postgres && key == TopClient {
				k = `k COLLATE "C"` // the order of the addresses' bytes, as the records sort them
			}
			rows, err = l.db.QueryContext(ctx, l.d.rebind("SELECT k, SUM(n) AS c, SUM(bytes) AS s FROM decision_top WHERE kind = ? AND "+
				cond+" GROUP BY k HAVING SUM(n) > 0 ORDER BY "+order+" DESC, "+k+" LIMIT "+fmt.Sprint(n)), args...)
		}
	}
	if !rolled {
		q, berr := f.build(l.d)
		if berr != nil {
			return nil, berr
		}
		rows, err = l.db.QueryContext(ctx, l.d.rebind("SELECT "+col+", COUNT(*) AS c, SUM(size) AS s FROM decisions WHERE "+
			q.sql()+" GROUP BY "+col+" ORDER BY "+order+" DESC, "+col+" LIMIT "+fmt.Sprint(n)), q.args...)
	}
	if err != nil {
		return nil, fmt.Errorf("decisionlog: top %s: %w", col, err)
	}
	defer rows.Close()
	var out []TopEntry
	for rows.Next() {
		var e TopEntry
		if key == TopClient {
			var ip []byte
			if rolled {
				var h string
				if err := rows.Scan(&h, &e.Count, &e.Bytes); err != nil {
					return nil, fmt.Errorf("decisionlog: top %s: %w", col, err)
				}
				ip, _ = hex.DecodeString(h)
			} else if err := rows.Scan(&ip, &e.Count, &e.Bytes); err != nil {
				return nil, fmt.Errorf("decisionlog: top %s: %w", col, err)
			}
			if a := ipFromBytes(ip); a.IsValid() {
				e.Key = a.String()
			}
		} else if err := rows.Scan(&e.Key, &e.Count, &e.Bytes); err != nil {
			return nil, fmt.Errorf("decisionlog: top %s: %w", col, err)
		}
		e.Approx = approx
		out = append(out, e)
	}
	return out, rows.Err()
}
