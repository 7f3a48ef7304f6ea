package bayes

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/cputime"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// serverCPU is the CPU time used so far by the PostgreSQL server that s is connected
// to: the postmaster and its children, live (from /proc) and exited (which the
// postmaster has waited for). The benchmarks add it to the client's, since training in
// PostgreSQL spends most of its CPU in the server. Linux only; 0 elsewhere.
func serverCPU(tb testing.TB, s *PostgresStore) time.Duration {
	var backend int
	if err := s.pool.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		tb.Fatal(err)
	}
	stat := func(pid int) []string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		// the fields after the command name in parentheses
		return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	}
	ticks := func(f []string, idx ...int) (n int64) {
		for _, i := range idx {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			n += v
		}
		return n
	}
	f := stat(backend)
	if f == nil {
		return 0
	}
	postmaster, _ := strconv.Atoi(f[1])
	pf := stat(postmaster)
	if pf == nil {
		return 0
	}
	// fields 14-17 of proc(5): utime, stime, cutime, cstime (here from index 11)
	total := ticks(pf, 11, 12, 13, 14)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cf := stat(pid); cf != nil && cf[1] == strconv.Itoa(postmaster) {
			total += ticks(cf, 11, 12)
		}
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ
}

// corpusUpdates tokenizes the SpamAssassin train split (4857 messages) as bayes train
// does, and returns the updates and the test split.
func corpusUpdates(tb testing.TB) ([]Update, [][]byte) {
	d := corpusDir(tb)
	c, _ := New(Config{}, NewMemStore())
	var ups []Update
	for _, m := range readDir(tb, filepath.Join(d, "train", "spam")) {
		ups = append(ups, c.TrainUpdate(m, Spam))
	}
	for _, m := range readDir(tb, filepath.Join(d, "train", "ham")) {
		ups = append(ups, c.TrainUpdate(m, Ham))
	}
	return ups, append(readDir(tb, filepath.Join(d, "test", "spam")), readDir(tb, filepath.Join(d, "test", "ham"))...)
}

// BenchmarkTrainStores trains the corpus's train split into a new SQLite and a new
// PostgreSQL store, as one batch (bayes train) and message by message (the Junk moves,
// the quarantine release, autolearn). msgs/cpu-s counts the PostgreSQL server's CPU
// with the client's.
func BenchmarkTrainStores(b *testing.B) {
	ctx := context.Background()
	ups, _ := corpusUpdates(b)
	dsn := pgtest.Start(b)
	open := map[string]func(b *testing.B) (Store, func() time.Duration){
		"sqlite": func(b *testing.B) (Store, func() time.Duration) {
			s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "g.db"), SQLiteOptions{RefreshInterval: -1, NoSnapshot: true})
			if err != nil {
				b.Fatal(err)
			}
			return s, func() time.Duration { return 0 }
		},
		"postgres": func(b *testing.B) (Store, func() time.Duration) {
			s, err := OpenPostgres(ctx, pgtest.NewDatabase(b, dsn), PostgresOptions{RefreshInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			return s, func() time.Duration { return serverCPU(b, s) }
		},
	}
	for _, mode := range []string{"batch", "each"} {
		for _, kind := range []string{"sqlite", "postgres"} {
			b.Run(mode+"/"+kind, func(b *testing.B) {
				var cpu, wall time.Duration
				var msgs int
				for b.Loop() {
					b.StopTimer()
					s, server := open[kind](b)
					n := len(ups)
					if mode == "each" {
						n = 1000 // the first 1000, one transaction each
					}
					c0, s0, t0 := cputime.Used(), server(), time.Now()
					b.StartTimer()
					if mode == "batch" {
						if _, err := s.Apply(ctx, ups); err != nil {
							b.Fatal(err)
						}
					} else {
						for _, u := range ups[:n] {
							if _, err := s.Apply(ctx, []Update{u}); err != nil {
								b.Fatal(err)
							}
						}
					}
					b.StopTimer()
					wall += time.Since(t0)
					cpu += cputime.Used() - c0 + server() - s0
					msgs += n
					s.Close()
					b.StartTimer()
				}
				b.ReportMetric(float64(msgs)/wall.Seconds(), "msgs/s")
				b.ReportMetric(float64(msgs)/cpu.Seconds(), "msgs/cpu-s")
			})
		}
	}
}

// BenchmarkClassifyStores classifies the test split with a store of each kind trained
// on the train split: the same in-memory lookups, whatever holds the database.
func BenchmarkClassifyStores(b *testing.B) {
	ctx := context.Background()
	ups, msgs := corpusUpdates(b)
	dsn := pgtest.NewDatabase(b, pgtest.Start(b))
	sq, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "g.db"), SQLiteOptions{RefreshInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer sq.Close()
	pg := openPG(b, dsn, PostgresOptions{RefreshInterval: time.Second}) // refreshing as in a server
	for _, s := range []Store{NewMemStore(), sq, pg} {
		if _, err := s.Apply(ctx, ups); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"mem", "sqlite", "postgres"} {
		s := map[string]Store{"mem": nil, "sqlite": sq, "postgres": pg}[kind]
		if s == nil {
			s = NewMemStore()
			s.Apply(ctx, ups)
		}
		c, _ := New(Config{}, s)
		b.Run(kind, func(b *testing.B) {
			cpu := cputime.Used()
			for b.Loop() {
				for _, m := range msgs {
					c.Classify(ctx, m)
				}
			}
			b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N*len(msgs))/(cputime.Used()-cpu).Seconds(), "msgs/cpu-s")
		})
	}
}

// BenchmarkLoadMillion measures a node's start: loading a table of one million tokens
// from PostgreSQL, beside SQLite without its snapshot. cpu-ms/op counts the server's
// CPU with the client's.
func BenchmarkLoadMillion(b *testing.B) {
	ctx := context.Background()
	ups := millionTokens()
	dsn := pgtest.NewDatabase(b, pgtest.Start(b))
	pg := openPG(b, dsn, PostgresOptions{})
	if _, err := pg.Apply(ctx, ups); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "g.db")
	sq, err := OpenSQLite(ctx, path, SQLiteOptions{NoSnapshot: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sq.Apply(ctx, ups); err != nil {
		b.Fatal(err)
	}
	sq.Close()
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				c0, s0 := cputime.Used(), serverCPU(b, pg)
				var n int
				if kind == "sqlite" {
					s, err := OpenSQLite(ctx, path, SQLiteOptions{NoSnapshot: true, RefreshInterval: -1})
					if err != nil {
						b.Fatal(err)
					}
					n = s.t.tokens.len()
					s.Close()
				} else {
					s, err := OpenPostgres(ctx, dsn, PostgresOptions{RefreshInterval: -1})
					if err != nil {
						b.Fatal(err)
					}
					n = s.t.tokens.len()
					s.Close()
				}
				cpu += cputime.Used() - c0 + serverCPU(b, pg) - s0
				if n != 1_000_000 {
					b.Fatalf("%d tokens", n)
				}
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// millionTokens is 1000 messages of 1000 distinct random tokens each.
func millionTokens() []Update {
	r := rand.New(rand.NewPCG(1, 1))
	ups := make([]Update, 1000)
	for i := range ups {
		ups[i] = Update{Class: Class(1 + i%2), Tokens: make([]uint64, 1000)}
		for j := range ups[i].Tokens {
			ups[i].Tokens[j] = r.Uint64()
		}
	}
	return ups
}

// BenchmarkRefreshDelta measures the refresh of a node holding one million tokens
// after another node trained 1000 messages of the corpus: it reads only their tokens.
func BenchmarkRefreshDelta(b *testing.B) {
	ctx := context.Background()
	ups, _ := corpusUpdates(b)
	delta := ups[:1000]
	for i := range delta {
		delta[i].Digest = 0 // untracked: trained again at each round
	}
	dsn := pgtest.NewDatabase(b, pgtest.Start(b))
	trainer, node := openPG(b, dsn, PostgresOptions{}), openPG(b, dsn, PostgresOptions{})
	if _, err := trainer.Apply(ctx, millionTokens()); err != nil {
		b.Fatal(err)
	}
	refresh(b, node)
	var cpu time.Duration
	var rows int64
	for b.Loop() {
		b.StopTimer()
		if _, err := trainer.Apply(ctx, delta); err != nil {
			b.Fatal(err)
		}
		c0, s0 := cputime.Used(), serverCPU(b, node)
		b.StartTimer()
		rows += refresh(b, node)
		b.StopTimer()
		cpu += cputime.Used() - c0 + serverCPU(b, node) - s0
		b.StartTimer()
	}
	b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(node.t.tokens.len()), "tokens")
}
