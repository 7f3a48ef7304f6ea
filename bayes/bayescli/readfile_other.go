//go:build !unix

package bayescli

import "os"

func readFile(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := int64(0)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	raw, err := readAtMost(f, size, max)
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: p, Err: err}
	}
	return raw, nil
}
