//go:build !unix

package bayes

import "os"

// mapSnapshot reads the snapshot into new arrays where mmap is not available.
func mapSnapshot(f *os.File, size int64, gen uint64) (*table, error) {
	return decodeSnapshot(f, size, gen)
}
