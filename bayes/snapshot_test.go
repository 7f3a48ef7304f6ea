package bayes

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"hash/crc64"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func trainSynth(t *testing.T, s Store, seed uint64, n int) {
	t.Helper()
	c, _ := New(Config{}, s)
	trainAlternating(t, c, rand.New(rand.NewPCG(seed, seed)), int(seed)*1000, n)
}

func openT(t *testing.T, path string) *SQLiteStore {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, SQLiteOptions{RefreshInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// entries returns an SQLite store's cached token table with the days (snapshot, the
// helper of the store tests, drops them).
func entries(t *testing.T, s *SQLiteStore) (map[uint64]entry, Totals) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Collect(s.t.tokens.all()), s.t.totals
}

// snapGen returns the generation of the valid snapshot beside path, or fails.
func snapGen(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(snapshotPath(path))
	if err != nil || len(b) < snapHeader {
		t.Fatalf("no snapshot: %v, %d bytes", err, len(b))
	}
	gen := binary.NativeEndian.Uint64(b[16:])
	if _, err := decodeSnapshot(bytes.NewReader(b), int64(len(b)), gen); err != nil {
		t.Fatalf("snapshot of generation %d does not decode: %v", gen, err)
	}
	return gen
}

// resum recomputes a snapshot's checksum after a test changed its header, so that
// only the header checks can reject it.
func resum(b []byte) []byte {
	sum := crc32.Update(0, castagnoli, b[:60])
	binary.NativeEndian.PutUint32(b[60:], crc32.Update(sum, castagnoli, b[snapHeader:]))
	return b
}

// encodeSnapshotV1 writes format 1 (the list of tokens before the table image), to
// test that such a file is ignored and replaced.
func encodeSnapshotV1(t *table, gen uint64) []byte {
	b := append([]byte(nil), "PCBSNAP1"...)
	b = binary.LittleEndian.AppendUint64(b, gen)
	b = binary.LittleEndian.AppendUint32(b, t.totals.Spam)
	b = binary.LittleEndian.AppendUint32(b, t.totals.Ham)
	b = binary.LittleEndian.AppendUint64(b, uint64(t.tokens.len()))
	for h, e := range t.tokens.all() {
		b = binary.LittleEndian.AppendUint64(b, h)
		b = binary.LittleEndian.AppendUint32(b, e.spam)
		b = binary.LittleEndian.AppendUint32(b, e.ham)
	}
	return binary.LittleEndian.AppendUint64(b, crc64.Checksum(b, crc64.MakeTable(crc64.ECMA)))
}

// TestSnapshot: closing a store that trained writes the snapshot, the image of its
// table (days included); the next open uses it and gets the same counts as from SQLite
// (the SQLite store keeps days only in the database); a stale, old-format, truncated,
// corrupt or implausible snapshot is ignored and rewritten.
func TestSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := openT(t, path)
	trainSynth(t, s, 1, 20)
	wantDays, wtot := entries(t, s)
	want, _ := snapshot(t, s)
	s.Close()
	b, err := os.ReadFile(snapshotPath(path))
	if err != nil {
		t.Fatalf("no snapshot after training: %v", err)
	}
	snap, err := decodeSnapshot(bytes.NewReader(b), int64(len(b)), 20)
	if err != nil || snap.totals != wtot || !maps.Equal(maps.Collect(snap.tokens.all()), wantDays) {
		t.Fatalf("snapshot: %v, totals %v, %d tokens; want generation 20, %v, %d tokens", err, snap.totals, snap.tokens.len(), wtot, len(wantDays))
	}
	for _, e := range wantDays {
		if e.day == 0 {
			t.Fatal("trained token without a day: the test would not check the days")
		}
	}
	// check opens the store (from the snapshot if valid) and compares its table with
	// the training store's and with the table read from SQLite; the open must leave a
	// valid snapshot of the current generation behind, rewritten if it was bad
	check := func(what string, bad []byte) {
		t.Helper()
		s := openT(t, path)
		got, gtot := snapshot(t, s)
		gen := s.gen
		s.Close()
		if gtot != wtot || !maps.Equal(got, want) {
			t.Errorf("%s: reopened table differs: %v vs %v, %d vs %d tokens", what, gtot, wtot, len(got), len(want))
		}
		sq, err := OpenSQLite(context.Background(), path, SQLiteOptions{RefreshInterval: -1, NoSnapshot: true})
		if err != nil {
			t.Fatal(err)
		}
		fromSQL, stot := snapshot(t, sq)
		sq.Close()
		if stot != gtot || !maps.Equal(fromSQL, got) {
			t.Errorf("%s: table read from SQLite differs: %v vs %v, %d vs %d tokens", what, stot, gtot, len(fromSQL), len(got))
		}
		if g := snapGen(t, path); g != gen {
			t.Errorf("%s: snapshot of generation %d left behind, want %d", what, g, gen)
		}
		if b, _ := os.ReadFile(snapshotPath(path)); bad != nil && bytes.Equal(b, bad) {
			t.Errorf("%s: snapshot not rewritten", what)
		}
	}
	check("from snapshot", nil)

	// another writer that leaves no snapshot behind (its generation moves on)
	s = openT(t, path)
	trainSynth(t, s, 2, 6)
	want, wtot = snapshot(t, s)
	s.dirty = false // as if it crashed before Close
	s.Close()
	check("stale snapshot", b)

	ne := binary.NativeEndian
	for _, c := range []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-9] }},
		{"truncated header", func(b []byte) []byte { return b[:snapHeader-1] }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
		{"flipped header byte", func(b []byte) []byte { b[33] ^= 1; return b }},
		{"flipped slot byte", func(b []byte) []byte { b[snapHeader+(len(b)-snapHeader)/3] ^= 0x40; return b }},
		{"flipped day byte", func(b []byte) []byte { b[len(b)-3] ^= 1; return b }},
		{"flipped checksum", func(b []byte) []byte { b[61] ^= 1; return b }},
		{"empty", func([]byte) []byte { return nil }},
		{"old format", func([]byte) []byte {
			s := openT(t, path)
			defer s.Close()
			return encodeSnapshotV1(s.t, s.gen)
		}},
		{"other version", func(b []byte) []byte { ne.PutUint32(b[8:], snapVersion+1); return resum(b) }},
		{"other byte order", func(b []byte) []byte { ne.PutUint32(b[12:], 0x04030201); return resum(b) }},
		{"wrong generation", func(b []byte) []byte { ne.PutUint64(b[16:], ne.Uint64(b[16:])+1); return resum(b) }},
		{"capacity not a power of two", func(b []byte) []byte { ne.PutUint64(b[24:], ne.Uint64(b[24:])-1); return resum(b) }},
		{"count over half", func(b []byte) []byte { ne.PutUint64(b[32:], ne.Uint64(b[24:])/2+1); return resum(b) }},
		{"count wrong", func(b []byte) []byte { ne.PutUint64(b[32:], ne.Uint64(b[32:])-1); return resum(b) }},
		{"size mismatch", func(b []byte) []byte { ne.PutUint64(b[24:], ne.Uint64(b[24:])*2); return resum(b) }},
	} {
		b, _ := os.ReadFile(snapshotPath(path))
		bad := c.mangle(b)
		if err := os.WriteFile(snapshotPath(path), bad, 0o600); err != nil {
			t.Fatal(err)
		}
		check(c.name, bad)
	}
}

// TestSnapshotTrainMapped: a store opened from the snapshot (its table the mapped
// file) trains, writes the snapshot on Close from that table and is collected (its
// mapping unmapped) while the next store uses the new snapshot.
func TestSnapshotTrainMapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := openT(t, path)
	trainSynth(t, s, 1, 20)
	s.Close()
	for round := range 3 {
		s = openT(t, path)
		trainSynth(t, s, uint64(10+round), 10)
		want, wtot := entries(t, s)
		s.Close()
		s = nil
		runtime.GC()
		runtime.GC()
		s2 := openT(t, path)
		got, gtot := entries(t, s2)
		s2.Close()
		if gtot != wtot || !maps.Equal(got, want) {
			t.Fatalf("round %d: reopened table differs: %v vs %v, %d vs %d tokens", round, gtot, wtot, len(got), len(want))
		}
	}
}

// TestSnapshotImage: the image keeps the zero key, the days and the table's capacity,
// and lookups in the decoded table find every token.
func TestSnapshotImage(t *testing.T) {
	tab := newTable()
	r := rand.New(rand.NewPCG(3, 3))
	want := map[uint64]entry{0: {spam: 7, ham: 8, day: 9}}
	tab.tokens.set(0, want[0])
	for range 5000 {
		h, e := r.Uint64(), entry{spam: r.Uint32N(100), ham: r.Uint32N(100), day: uint16(r.UintN(30000))}
		tab.tokens.set(h, e)
		want[h] = e
	}
	tab.totals = Totals{Spam: 11, Ham: 12}
	b := encodeSnapshot(tab, 5)
	if len(b) != snapHeader+len(tab.tokens.slots)*18 {
		t.Fatalf("%d bytes for %d slots", len(b), len(tab.tokens.slots))
	}
	got, err := decodeSnapshot(bytes.NewReader(b), int64(len(b)), 5)
	if err != nil {
		t.Fatal(err)
	}
	if got.totals != tab.totals || len(got.tokens.slots) != len(tab.tokens.slots) || got.tokens.len() != len(want) ||
		!maps.Equal(maps.Collect(got.tokens.all()), want) {
		t.Fatalf("decoded table differs: %v, %d slots, %d tokens", got.totals, len(got.tokens.slots), got.tokens.len())
	}
	for h, e := range want {
		if c := got.tokens.counts(h); c != (Counts{Spam: e.spam, Ham: e.ham}) {
			t.Fatalf("counts(%x) = %v, want %v", h, c, e)
		}
	}
	if _, err := decodeSnapshot(bytes.NewReader(b), int64(len(b)), 6); err == nil {
		t.Error("snapshot of generation 5 accepted as 6")
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
	f.Add([]byte("PCBSNAPM"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := decodeSnapshot(bytes.NewReader(b), int64(len(b)), 9)
		if err == nil && (tab.tokens.len() > len(b)/(snapSlot+snapDay)+1 || 2*tab.tokens.n > len(tab.tokens.slots)) {
			t.Fatalf("%d tokens in %d slots from %d bytes", tab.tokens.len(), len(tab.tokens.slots), len(b))
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
