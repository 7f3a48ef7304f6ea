package store

import (
	"context"
	"testing"
	"time"
)

// A transaction that runs a statement the cache does not hold yet must not take a
// second connection of its pool: with the pool's other connection held by a writer
// waiting for this transaction's write lock (CacheEnvelope in SQLite's busy handler),
// the two waited for each other until busy_timeout failed the writer (issue 16's stall
// of every session of a user under imaptest's stress).
func TestTxStatementNeedsNoSecondConnection(t *testing.T) {
	ctx := context.Background()
	u := open(t, newStore(t, Config{}), "alice@example.org")
	uid, err := u.Append(ctx, "INBOX", msg("x"), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox(ctx, "INBOX")
	if max := u.lazy.Stats().MaxOpenConnections; max != 2 {
		t.Fatalf("the lazy pool has %d connections; the test needs 2", max)
	}
	inTx := make(chan struct{})
	cached := make(chan error, 1)
	go func() {
		<-inTx
		cached <- u.CacheEnvelope(ctx, mb, uid.UID, []byte("envelope"))
	}()
	err = u.lazyTx(ctx, func(q cachedQ) error {
		close(inTx)
		// Wait until CacheEnvelope holds the pool's other connection (busy waiting for
		// this transaction's write lock).
		for u.lazy.Stats().InUse < 2 {
			time.Sleep(time.Millisecond)
		}
		_, err := q.ExecContext(ctx, `UPDATE mailbox SET modseq = modseq /* a statement not cached yet */ WHERE id = ?`, mb.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-cached; err != nil {
		t.Errorf("CacheEnvelope beside the transaction: %v", err)
	}
}
