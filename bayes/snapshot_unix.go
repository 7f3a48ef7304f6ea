//go:build unix

package bayes

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// mapSnapshot maps the snapshot file (private, copy on write) and uses the mapping as
// the table's arrays, rather than reading it into new ones. Chosen by measurement on
// this VM, for the 4.7 MB snapshot of 130k tokens in a fresh process (CPU over a run
// that only starts): reading into new heap arrays cost 22-26 ms (1270 page faults: the
// kernel faults in and zeroes every fresh anonymous page, and faults are dear under
// this virtualization; MADV_POPULATE_WRITE first, 18-24 ms), so that a one-shot
// classify was no faster than with format 1 (54-58 against 53-56 ms); mapping and
// checksumming cost 1-2 ms (30 faults: page-cache pages are mapped 16 at a time, and
// nothing is copied or zeroed), MAP_POPULATE 8-9 ms. The checksum still reads every
// page. Training writes copy only the pages they touch; grow moves the table to the
// heap.
//
// The mapping is unmapped by a cleanup once the tokenMap is unreachable: nothing keeps
// its slot or day slices longer than the map itself (writeSnapshot and snapHeaderOf
// keep it alive while they read them). The file must not be truncated or written in
// place while mapped (a truncation would fault the process); the stores only ever
// replace it by rename, which leaves the mapped file intact.
func mapSnapshot(f *os.File, size int64, gen uint64) (*table, error) {
	if size < snapHeader || size > snapHeader+snapMaxCap*int64(snapSlot+snapDay) {
		return nil, errSnapshot
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		return decodeSnapshot(f, size, gen)
	}
	t, err := mappedTable(b, size, gen)
	if err != nil {
		syscall.Munmap(b)
		return nil, err
	}
	runtime.AddCleanup(t.tokens, func(b []byte) { syscall.Munmap(b) }, b)
	return t, nil
}

func mappedTable(b []byte, size int64, gen uint64) (*table, error) {
	capacity, n, err := snapHeaderCheck(b[:snapHeader], size, gen)
	if err != nil {
		return nil, err
	}
	// the mapping is page aligned and the header 64 bytes, so the slots (8-byte
	// aligned) and the days (2-byte) are aligned
	c := int(capacity)
	m := &tokenMap{
		slots: unsafe.Slice((*slot)(unsafe.Pointer(&b[snapHeader])), c),
		days:  unsafe.Slice((*uint16)(unsafe.Pointer(&b[snapHeader+c*snapSlot])), c),
	}
	return snapTable(b[:snapHeader], n, m)
}
