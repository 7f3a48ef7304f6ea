package quarantine

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

// meetingSpool holds each Enqueue until a second one arrives (or a while passes), so two
// releases racing each other both reach the queue if nothing serialises them.
type meetingSpool struct {
	*spool.Spool
	arrived chan struct{}
	copies  atomic.Int32
}

func (m *meetingSpool) Enqueue(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error) {
	select {
	case m.arrived <- struct{}{}:
	case <-m.arrived:
	case <-time.After(500 * time.Millisecond): // alone: the other caller is waiting on a lock
	}
	m.copies.Add(1)
	return m.Spool.Enqueue(ctx, env, msg)
}

// TestConcurrentReleaseDeliversOnce: two clicks on "Release" (two tabs, a double submit)
// queue one copy; the other gets ErrNotFound. Release and Delete at once do one of them.
func TestConcurrentReleaseDeliversOnce(t *testing.T) {
	ctx := context.Background()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "queue"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	ms := &meetingSpool{Spool: sp, arrived: make(chan struct{})}
	a, err := New(Config{}, ms)
	if err != nil {
		t.Fatal(err)
	}
	id := quarantined(t, sp, "alice@example.test", "bob@example.test")

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = a.Release(ctx, id, "alice@example.test", "alice@example.test") })
	}
	wg.Wait()
	if n := ms.copies.Load(); n != 1 {
		t.Errorf("two concurrent releases queued %d copies, want 1 (errors %v)", n, errs)
	}
	if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs...), ErrNotFound) {
		t.Errorf("release errors %v, want one nil and one ErrNotFound", errs)
	}

	// Bob's item: a release and a delete at once end in one of the two, never both.
	var relErr, delErr error
	wg.Go(func() { _, relErr = a.Release(ctx, id, "bob@example.test", "bob@example.test") })
	wg.Go(func() { delErr = a.Delete(id, "bob@example.test", "bob@example.test") })
	wg.Wait()
	if (relErr == nil) == (delErr == nil) {
		t.Errorf("release %v and delete %v of one item: want exactly one to succeed", relErr, delErr)
	}
}
