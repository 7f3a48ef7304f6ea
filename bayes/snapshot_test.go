package bayes

import (
	"context"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func trainSynth(t *testing.T, s Store, seed uint64, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	c, _ := New(Config{}, s)
	for i := 0; i < n; i++ {
		if _, err := c.Train(context.Background(), synthMessage(r, i%2 == 0, int(seed)*1000+i), map[bool]Class{true: Spam, false: Ham}[i%2 == 0]); err != nil {
			t.Fatal(err)
		}
	}
}

func openT(t *testing.T, path string) *SQLiteStore {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, SQLiteOptions{RefreshInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSnapshot: closing a store that trained writes the snapshot; the next open uses
// it (and gets the same table as from SQLite); a stale, truncated or corrupt snapshot
// is ignored and rewritten.
func TestSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := openT(t, path)
	trainSynth(t, s, 1, 20)
	want, wtot := snapshot(t, s)
	s.Close()
	b, err := os.ReadFile(snapshotPath(path))
	if err != nil {
		t.Fatalf("no snapshot after training: %v", err)
	}
	snap, gen, err := decodeSnapshot(b)
	if err != nil || gen != 20 || snap.totals != wtot || snap.tokens.len() != len(want) {
		t.Fatalf("snapshot: gen %d, totals %v, %d tokens, %v; want gen 20, %v, %d tokens", gen, snap.totals, snap.tokens.len(), err, wtot, len(want))
	}
	check := func(what string) {
		t.Helper()
		s := openT(t, path)
		defer s.Close()
		got, gtot := snapshot(t, s)
		if gtot != wtot || !maps.Equal(got, want) {
			t.Errorf("%s: reopened table differs: %v vs %v, %d vs %d tokens", what, gtot, wtot, len(got), len(want))
		}
	}
	check("from snapshot")

	// another writer that leaves no snapshot behind (its generation moves on)
	s = openT(t, path)
	trainSynth(t, s, 2, 6)
	want, wtot = snapshot(t, s)
	s.dirty = false // as if it crashed before Close
	s.Close()
	check("stale snapshot")
	if b2, _ := os.ReadFile(snapshotPath(path)); len(b2) == len(b) {
		t.Error("stale snapshot was not rewritten on open")
	}

	for name, mangle := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)-9] },
		"corrupt":   func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"empty":     func([]byte) []byte { return nil },
	} {
		b, _ := os.ReadFile(snapshotPath(path))
		if err := os.WriteFile(snapshotPath(path), mangle(b), 0o600); err != nil {
			t.Fatal(err)
		}
		check(name)
	}
}

// TestSnapshotTwoWriters: a store whose database another process wrote meanwhile does
// not write its (incomplete) table as a snapshot.
func TestSnapshotTwoWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	a, b := openT(t, path), openT(t, path)
	trainSynth(t, a, 1, 4)
	trainSynth(t, b, 2, 4)
	b.Close()
	a.Close() // its cache lacks b's training
	s := openT(t, path)
	defer s.Close()
	_, tot := snapshot(t, s)
	if tot.Spam+tot.Ham != 8 {
		t.Errorf("reopened after two writers: totals %v, want 8 messages", tot)
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	tab := newTable()
	tab.tokens.set(1, entry{spam: 2, ham: 3})
	tab.tokens.set(0, entry{spam: 1})
	tab.totals = Totals{Spam: 5, Ham: 7}
	f.Add(encodeSnapshot(tab, 9))
	f.Add([]byte("PCBSNAP1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, _, err := decodeSnapshot(b)
		if err == nil && tab.tokens.len() > len(b)/snapEntry {
			t.Fatalf("%d tokens from %d bytes", tab.tokens.len(), len(b))
		}
	})
}

// BenchmarkOpenSQLite opens a store of 130k tokens, from the snapshot and from SQLite.
func BenchmarkOpenSQLite(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "g.db")
	s, err := OpenSQLite(ctx, path, SQLiteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	ups := make([]Update, 1000)
	for i := range ups {
		ups[i] = Update{Class: Class(1 + i%2), Tokens: make([]uint64, 130)}
		for j := range ups[i].Tokens {
			ups[i].Tokens[j] = r.Uint64()
		}
	}
	if _, err := s.Apply(ctx, ups); err != nil {
		b.Fatal(err)
	}
	s.Close()
	for _, no := range []bool{false, true} {
		b.Run(map[bool]string{false: "snapshot", true: "sqlite"}[no], func(b *testing.B) {
			for b.Loop() {
				s, err := OpenSQLite(ctx, path, SQLiteOptions{NoSnapshot: no, RefreshInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				if s.t.tokens.len() != 130000 {
					b.Fatalf("%d tokens", s.t.tokens.len())
				}
				s.Close()
			}
		})
	}
}
