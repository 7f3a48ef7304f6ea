package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// An IMAP internal date is a date-time with its zone (RFC 3501 §2.3.3, RFC 9051 §2.3.3):
// APPEND "03-Feb-2001 04:05:06 +1400" must come back as written, as Dovecot's mbox and
// Cyrus return it, not converted to the server's zone. message.internal_date holds the
// instant (unix nanoseconds, also the file's mtime); message.internal_zone holds the
// zone's offset east of UTC in seconds, NULL when none is known: rows indexed from the
// maildir (a rebuild, files other programs dropped) and rows written before the column
// existed, which keep being shown in the server's zone.
//
// The column is added once, guarded by the meta key 'internal_zone'. The check and the
// ALTER TABLE run in one immediate transaction (SQLite's DDL is transactional), so two
// processes opening the same index cannot both add it, and a crash leaves either both or
// neither.
func addInternalZone(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock=immediate)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM meta WHERE k = 'internal_zone'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `ALTER TABLE message ADD COLUMN internal_zone INTEGER`); err != nil {
		return fmt.Errorf("add message.internal_zone: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(k, v) VALUES('internal_zone', 1)`); err != nil {
		return err
	}
	return tx.Commit()
}

// zoneOffset is the offset to store beside t's instant.
func zoneOffset(t time.Time) int64 {
	_, off := t.Zone()
	return int64(off)
}

// zones caches one *time.Location per offset: a folder's messages share a handful of
// zones, and reading 100,000 rows should not allocate 100,000 locations. Only
// whole-minute offsets up to ±99:59 (what a "+HHMM" zone can say) are cached, so the cache
// stays bounded whatever clients send. (A map under a lock, not a sync.Map: boxing the
// int64 key into an interface allocated once per row.)
var zones struct {
	sync.RWMutex
	m map[int64]*time.Location
}

const maxZone = 99*3600 + 59*60

// internalDate is the time.Time of an index row: the instant in its own fixed zone, or
// in the server's zone when the row has none.
func internalDate(nanos int64, zone sql.NullInt64) time.Time {
	t := time.Unix(0, nanos)
	if !zone.Valid {
		return t
	}
	off := zone.Int64
	if off%60 != 0 || off < -maxZone || off > maxZone {
		return t.In(time.FixedZone("", int(off))) // not from a ±HHMM zone: not worth caching
	}
	zones.RLock()
	loc := zones.m[off]
	zones.RUnlock()
	if loc == nil {
		zones.Lock()
		if loc = zones.m[off]; loc == nil {
			if zones.m == nil {
				zones.m = map[int64]*time.Location{}
			}
			loc = time.FixedZone("", int(off))
			zones.m[off] = loc
		}
		zones.Unlock()
	}
	return t.In(loc)
}
