package bayes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"
)

// The snapshot is an image of an SQLite store's in-memory token table, kept beside the
// database (PATH.snap) so that a process starting up (a `portcullis bayes classify`,
// a server restart) takes the table as it is, with no hashing or probing, instead of
// stepping through an SQLite query: 2.0-2.3 ms instead of about 100 ms for 130k tokens
// (BenchmarkOpenSQLite; format 1 took 5-7.6 ms). It is only a cache: it records the
// database's generation (meta 'gen', incremented by every write transaction) and is used
// only when that matches, else the table is read from SQLite and the snapshot
// rewritten; so is a snapshot of another format or byte order, with a bad checksum or
// an implausible header. It is written to a temporary file and renamed, so readers never
// see a partial one. It is not fsynced: after a crash a torn snapshot fails its checksum
// and is rebuilt from the database, so the sync would buy nothing but latency on every
// Close after training.
//
// Layout: a 64-byte header in the writer's byte order,
//
//	 0 magic "PCBSNAPM"          8 format version u32 (2)   12 byte-order mark u32 0x01020304
//	16 generation u64           24 capacity u64 (slots, a power of two)
//	32 count u64 (keys in the slots, at most capacity/2)
//	40 spam total u32           44 ham total u32
//	48 zero-key entry: spam u32, ham u32, day u16, present u8, 0 u8
//	60 CRC-32C (Castagnoli) of the header's first 60 bytes, the slots and the days
//
// then the slots (capacity × 16 bytes: key u64, spam u32, ham u32) and the days
// (capacity × 2 bytes) exactly as tokenMap holds them in memory. (The SQLite store
// keeps the days in the database and does not load them into its cache, so the days
// of an SQLite snapshot are only those its writer trained; nothing reads them there.)
//
// Format 1 ("PCBSNAP1": a list of (hash, spam, ham), CRC-64) was read into a buffer
// and inserted token by token into a new table, about 30 ms of a one-shot classify's
// CPU here (the page faults of the new memory, the inserts, the CRC-64); its files are
// now ignored and rewritten.

var snapMagic = []byte("PCBSNAPM")

const (
	snapVersion   = 2
	snapByteOrder = 0x01020304
	snapHeader    = 64
	snapSlot      = int(unsafe.Sizeof(slot{}))
	snapDay       = 2
	// a sanity bound on the capacity read from a header (2^30 slots = 18 GB), so
	// that a damaged header cannot ask for an absurd allocation before the size check
	snapMaxCap = 1 << 30
)

// The image relies on slot having no padding (16 bytes: every byte is data, so the
// file is deterministic): this fails to compile otherwise.
const _ uintptr = -(unsafe.Sizeof(slot{}) - 16)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func snapshotPath(dbPath string) string { return dbPath + ".snap" }

// slotBytes and dayBytes view the arrays as bytes (unsafe.Slice): the snapshot is their
// memory image, so writing, reading and checksumming them directly avoids encoding
// every token and, on reading, hashing and probing it into a new table. slot and uint16
// have no pointers and no padding, so the view is safe; the byte-order mark keeps an
// image from another byte order from being misread.
func slotBytes(s []slot) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*snapSlot)
}

func dayBytes(d []uint16) []byte {
	if len(d) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*snapDay)
}

// snapHeaderOf builds the header of t as generation gen, with its checksum.
func snapHeaderOf(t *table, gen uint64) []byte {
	m := t.tokens
	ne := binary.NativeEndian
	h := make([]byte, snapHeader)
	copy(h, snapMagic)
	ne.PutUint32(h[8:], snapVersion)
	ne.PutUint32(h[12:], snapByteOrder)
	ne.PutUint64(h[16:], gen)
	ne.PutUint64(h[24:], uint64(len(m.slots)))
	ne.PutUint64(h[32:], uint64(m.n))
	ne.PutUint32(h[40:], t.totals.Spam)
	ne.PutUint32(h[44:], t.totals.Ham)
	ne.PutUint32(h[48:], m.zero.spam)
	ne.PutUint32(h[52:], m.zero.ham)
	ne.PutUint16(h[56:], m.zero.day)
	if m.hasZero {
		h[58] = 1
	}
	ne.PutUint32(h[60:], snapSum(h, m))
	return h
}

// snapSum is the checksum of a snapshot: CRC-32C of the header's first 60 bytes, the
// slots and the days.
func snapSum(h []byte, m *tokenMap) uint32 {
	sum := crc32.Update(0, castagnoli, h[:60])
	sum = crc32.Update(sum, castagnoli, slotBytes(m.slots))
	sum = crc32.Update(sum, castagnoli, dayBytes(m.days))
	runtime.KeepAlive(m) // its arrays may be a mapping that a cleanup unmaps
	return sum
}

// encodeSnapshot returns the snapshot of t as generation gen in one buffer (for tests;
// writeSnapshot writes the arrays without copying them).
func encodeSnapshot(t *table, gen uint64) []byte {
	b := snapHeaderOf(t, gen)
	b = append(b, slotBytes(t.tokens.slots)...)
	return append(b, dayBytes(t.tokens.days)...)
}

var (
	errSnapshot      = errors.New("bayes: invalid token snapshot")
	errSnapshotStale = errors.New("bayes: token snapshot of another generation")
)

// snapHeaderCheck checks a snapshot's header against the file size and the generation
// wanted, and returns the capacity and count it gives.
func snapHeaderCheck(h []byte, size int64, gen uint64) (capacity, n uint64, err error) {
	ne := binary.NativeEndian
	if size < snapHeader || len(h) < snapHeader || !bytes.Equal(h[:8], snapMagic) ||
		ne.Uint32(h[8:]) != snapVersion || ne.Uint32(h[12:]) != snapByteOrder {
		return 0, 0, errSnapshot
	}
	if ne.Uint64(h[16:]) != gen {
		// checked before the arrays are read: a stale snapshot costs one small read
		return 0, 0, errSnapshotStale
	}
	capacity, n = ne.Uint64(h[24:]), ne.Uint64(h[32:])
	if capacity < 2 || capacity > snapMaxCap || bits.OnesCount64(capacity) != 1 || n > capacity/2 ||
		uint64(size) != snapHeader+capacity*uint64(snapSlot+snapDay) || h[58] > 1 || h[59] != 0 {
		return 0, 0, errSnapshot
	}
	return capacity, n, nil
}

// snapTable checks the checksum of a snapshot whose header h snapHeaderCheck accepted
// and whose arrays are in m.slots and m.days, and returns the table.
func snapTable(h []byte, n uint64, m *tokenMap) (*table, error) {
	ne := binary.NativeEndian
	if snapSum(h, m) != ne.Uint32(h[60:]) {
		return nil, errSnapshot
	}
	// the count must be the slots' (so at least half of them are empty and every
	// probe ends); the checksum vouches for the rest, since only writeSnapshot writes
	// a matching one
	keys := 0
	for i := range m.slots {
		if m.slots[i].key != 0 {
			keys++
		}
	}
	if uint64(keys) != n {
		return nil, errSnapshot
	}
	m.n = keys
	m.shift = uint(64 - bits.TrailingZeros(uint(len(m.slots))))
	m.zero = entry{spam: ne.Uint32(h[48:]), ham: ne.Uint32(h[52:]), day: ne.Uint16(h[56:])}
	m.hasZero = h[58] == 1
	return &table{tokens: m, totals: Totals{Spam: ne.Uint32(h[40:]), Ham: ne.Uint32(h[44:])}, seen: map[uint64]trained{}}, nil
}

// decodeSnapshot reads a snapshot of size bytes from r into new arrays: the table, if
// the snapshot is of generation gen and its header, size and checksum are right. (The
// stores map the file instead where they can: see readSnapshot.)
func decodeSnapshot(r io.Reader, size int64, gen uint64) (*table, error) {
	h := make([]byte, snapHeader)
	if size < snapHeader {
		return nil, errSnapshot
	}
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, errSnapshot
	}
	capacity, n, err := snapHeaderCheck(h, size, gen)
	if err != nil {
		return nil, err
	}
	m := &tokenMap{}
	m.init(int(capacity))
	if _, err := io.ReadFull(r, slotBytes(m.slots)); err != nil {
		return nil, errSnapshot
	}
	if _, err := io.ReadFull(r, dayBytes(m.days)); err != nil {
		return nil, errSnapshot
	}
	return snapTable(h, n, m)
}

// readSnapshot returns the snapshot beside dbPath if it is valid and of generation gen.
func readSnapshot(dbPath string, gen uint64) (*table, bool) {
	f, err := os.Open(snapshotPath(dbPath))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false
	}
	t, err := mapSnapshot(f, fi.Size(), gen)
	return t, err == nil
}

// writeSnapshot writes t as generation gen beside dbPath, atomically.
func writeSnapshot(dbPath string, t *table, gen uint64) error {
	f, err := os.CreateTemp(filepath.Dir(dbPath), filepath.Base(dbPath)+".snap-*")
	if err != nil {
		return fmt.Errorf("bayes: write snapshot of %s: %w", dbPath, err)
	}
	for _, b := range [][]byte{snapHeaderOf(t, gen), slotBytes(t.tokens.slots), dayBytes(t.tokens.days)} {
		if err == nil {
			_, err = f.Write(b)
		}
	}
	runtime.KeepAlive(t) // its arrays may be a mapping that a cleanup unmaps
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), snapshotPath(dbPath))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("bayes: write snapshot of %s: %w", dbPath, err)
	}
	return nil
}
