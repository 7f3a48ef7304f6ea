package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var benchMsg = "From: a@example.org\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef", 256) + "\r\n"

// BenchmarkDeliver measures one fsynced, indexed delivery to one user.
func BenchmarkDeliver(b *testing.B) {
	s, _ := New(Config{Dir: b.TempDir()})
	defer s.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Deliver(ctx, "bench@example.org", "", strings.NewReader(benchMsg), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliverParallelUsers delivers from 8 goroutines to 8 different users.
func BenchmarkDeliverParallelUsers(b *testing.B) {
	s, _ := New(Config{Dir: b.TempDir()})
	defer s.Close()
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		user := fmt.Sprintf("u%d@example.org", n.Add(1))
		for pb.Next() {
			if _, err := s.Deliver(ctx, user, "", strings.NewReader(benchMsg), nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkIndexLayout is the measurement behind one index file per user: 8 writers each
// committing small transactions (synchronous=FULL, as the store does) into one shared
// SQLite file versus into one file each.
func BenchmarkIndexLayout(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := "per-user"
		if shared {
			name = "global"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			const writers = 8
			dbs := make([]*sql.DB, writers)
			for i := range dbs {
				file := fmt.Sprintf("u%d.sqlite", i)
				if shared {
					file = "all.sqlite"
				}
				if shared && i > 0 {
					dbs[i] = dbs[0]
					continue
				}
				db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, file)+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_txlock=immediate")
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS m(user INTEGER, uid INTEGER, flags TEXT, PRIMARY KEY(user, uid))`); err != nil {
					b.Fatal(err)
				}
				dbs[i] = db
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N/writers + 1
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; i < per; i++ {
						tx, err := dbs[w].Begin()
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := tx.Exec(`INSERT INTO m VALUES(?, ?, '')`, w, next.Add(1)); err != nil {
							tx.Rollback()
							b.Error(err)
							return
						}
						if err := tx.Commit(); err != nil {
							b.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
		})
	}
}

// BenchmarkDeliverParallelOneUser delivers from 8 goroutines to one user's INBOX, as the
// queue and LMTP do for a busy mailbox: the appends share index commits (group commit).
func BenchmarkDeliverParallelOneUser(b *testing.B) {
	s, _ := New(Config{Dir: b.TempDir()})
	defer s.Close()
	ctx := context.Background()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Deliver(ctx, "one@example.org", "", strings.NewReader(benchMsg), nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
