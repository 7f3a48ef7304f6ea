package bayes

import (
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestStoresShared: the users of one database in a process (the policy, the Junk and
// release trainers) get one store, one token table: a training through one is seen at
// once through the others, and the store is closed with its last user.
func TestStoresShared(t *testing.T) {
	ctx := context.Background()
	ss := NewStores()
	path := filepath.Join(t.TempDir(), "global.db")
	a, err := ss.Open(ctx, path, "", -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ss.Open(ctx, filepath.Join(filepath.Dir(path), ".", "global.db"), "", -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.(*storeRef).sharedStore != b.(*storeRef).sharedStore || ss.attempts != 1 {
		t.Fatalf("two opens of one database gave two stores (%d opens)", ss.attempts)
	}
	if _, err := a.Apply(ctx, []Update{{Class: Spam, Tokens: []uint64{1, 2, 3}}}); err != nil {
		t.Fatal(err)
	}
	if tot, err := b.Lookup(ctx, nil, nil); err != nil || tot.Spam != 1 {
		t.Fatalf("the other user sees %+v %v, want the training at once", tot, err)
	}
	a.Close()
	a.Close() // a second Close of a reference releases nothing more
	if tot, err := b.Lookup(ctx, nil, nil); err != nil || tot.Spam != 1 {
		t.Fatalf("after the first user closed: %+v %v", tot, err)
	}
	b.Close()
	if len(ss.open) != 0 {
		t.Fatalf("%d stores left open after the last user closed", len(ss.open))
	}
	if _, err := b.Lookup(ctx, nil, nil); err == nil {
		t.Fatal("the store still answers after its last user closed it")
	}
}

// TestStoresBackoff: with the shared PostgreSQL store down, opening it is tried again
// only after a back-off that doubles up to RetryMax, not on every Junk move (each try
// would load the whole table once it answers), and the state is logged once each way.
func TestStoresBackoff(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := pgtest.NewDatabase(t, srv.DSN)
	logs := &testenv.LockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	ss := &Stores{RetryMin: time.Second, RetryMax: 4 * time.Second}
	path := filepath.Join(t.TempDir(), "global.db")
	srv.Stop()

	if _, err := ss.Open(ctx, path, dsn, -1, log); err == nil {
		t.Fatal("opened a stopped PostgreSQL")
	}
	for range 20 { // a burst of Junk moves
		_, err := ss.Open(ctx, path, dsn, -1, log)
		if err == nil || !strings.Contains(err.Error(), "not tried again before") {
			t.Fatalf("during the back-off: %v", err)
		}
	}
	if ss.attempts != 1 {
		t.Fatalf("%d opens tried in the first back-off, want 1", ss.attempts)
	}
	// The back-off doubles: after the first (1s), one try, then none for 2s.
	time.Sleep(1100 * time.Millisecond)
	ss.Open(ctx, path, dsn, -1, log)
	ss.Open(ctx, path, dsn, -1, log)
	if ss.attempts != 2 {
		t.Fatalf("%d opens tried, want 2", ss.attempts)
	}
	time.Sleep(1100 * time.Millisecond)
	ss.Open(ctx, path, dsn, -1, log)
	if ss.attempts != 2 {
		t.Fatalf("%d opens tried 1.1s into a 2s back-off, want 2", ss.attempts)
	}
	if n := strings.Count(logs.String(), "cannot be opened"); n != 1 {
		t.Errorf("logged the failure %d times, want once:\n%s", n, logs)
	}

	srv.Restart()
	var st Store
	for deadline := time.Now().Add(20 * time.Second); st == nil; time.Sleep(100 * time.Millisecond) {
		st, _ = ss.Open(ctx, path, dsn, -1, log)
		if time.Now().After(deadline) {
			t.Fatalf("not open 20s after PostgreSQL came back (%d tries)\n%s", ss.attempts, logs)
		}
	}
	defer st.Close()
	if ss.attempts > 5 {
		t.Errorf("%d opens tried, want a handful", ss.attempts)
	}
	if n := strings.Count(logs.String(), "open again"); n != 1 {
		t.Errorf("logged the recovery %d times, want once:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "password") {
		t.Errorf("the log names a password:\n%s", logs)
	}
}

// BenchmarkStoresHeap opens the global PostgreSQL store, trained with the corpus's
// train split, three times, as the policy, the Junk trainer and the release trainer of
// one process do: each its own copy (as before Stores) or one shared through Stores.
// heap-MiB is the live heap they hold (after a GC), beside each other in one run.
func BenchmarkStoresHeap(b *testing.B) {
	ctx := context.Background()
	ups, _ := corpusUpdates(b)
	dsn := pgtest.NewDatabase(b, pgtest.Start(b))
	pg := openPG(b, dsn, PostgresOptions{})
	if _, err := pg.Apply(ctx, ups); err != nil {
		b.Fatal(err)
	}
	tokens := pg.t.tokens.len()
	pg.Close()
	path := filepath.Join(b.TempDir(), "global.db")
	for _, mode := range []string{"separate", "shared"} {
		b.Run(mode, func(b *testing.B) {
			var heap float64
			for b.Loop() {
				base := liveHeap()
				ss := NewStores()
				var sts []Store
				for range 3 {
					var st Store
					var err error
					if mode == "separate" {
						st, err = OpenStore(ctx, path, dsn, -1, nil)
					} else {
						st, err = ss.Open(ctx, path, dsn, -1, nil)
					}
					if err != nil {
						b.Fatal(err)
					}
					sts = append(sts, st)
				}
				heap = liveHeap() - base
				for _, st := range sts {
					st.Close()
				}
			}
			b.ReportMetric(heap/(1<<20), "heap-MiB")
			b.ReportMetric(float64(tokens), "tokens")
		})
	}
}

func liveHeap() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc)
}
