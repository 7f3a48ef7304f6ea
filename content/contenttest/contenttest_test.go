package contenttest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/flate"
	"compress/gzip"
	"hash/crc32"
	"io"
	"testing"
)

func TestZerosCRC(t *testing.T) {
	for _, n := range []int64{0, 1, 7, 1000, 65536, 1<<20 + 3} {
		if got, want := ZerosCRC(n), crc32.ChecksumIEEE(make([]byte, n)); got != want {
			t.Errorf("ZerosCRC(%d) = %08x, want %08x", n, got, want)
		}
	}
}

// zerosReader checks that everything it is given is zero and counts it.
type zerosReader struct{ n int64 }

func (z *zerosReader) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != 0 {
			return 0, io.ErrUnexpectedEOF
		}
	}
	z.n += int64(len(p))
	return len(p), nil
}

// The generated streams are real: the standard decompressors read them to the end and
// accept their checksums and sizes.
func TestBombsAreValid(t *testing.T) {
	const n = 24 * MiB
	d, crc := DeflateZeros(n)
	if len(d) > n/500 {
		t.Errorf("%d bytes of deflate for %d MiB", len(d), n/MiB)
	}
	var z zerosReader
	if _, err := io.Copy(&z, flate.NewReader(bytes.NewReader(d))); err != nil || z.n != n {
		t.Fatalf("deflate: %d bytes, %v", z.n, err)
	}
	if crc != crc32.ChecksumIEEE(make([]byte, n)) {
		t.Fatal("deflate: wrong CRC")
	}

	gr, err := gzip.NewReader(bytes.NewReader(GzipZeros("zeros.bin", n)))
	if err != nil {
		t.Fatal(err)
	}
	z = zerosReader{}
	if _, err := io.Copy(&z, gr); err != nil || z.n != n || gr.Name != "zeros.bin" {
		t.Fatalf("gzip: %d bytes, %v, name %q", z.n, err, gr.Name)
	}

	zb := ZipZeros("zeros.bin", n)
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	z = zerosReader{}
	if _, err := io.Copy(&z, rc); err != nil || z.n != n {
		t.Fatalf("zip: %d bytes, %v", z.n, err) // zip checks the CRC and the size at EOF
	}

	if len(GzipZeros("x", 10*GiB)) > 11*MiB {
		t.Error("a 10 GiB gzip bomb is larger than 11 MiB")
	}
}

func TestNest(t *testing.T) {
	b := Nest(10, 16, ZipZeros("0.dat", 4*GiB))
	if len(b) > 512<<10 {
		t.Fatalf("10-deep nest of %d bytes", len(b))
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil || len(zr.File) != 16 {
		t.Fatalf("%v, %d entries", err, len(zr.File))
	}
}

func TestTarGzAndBzip2Zeros(t *testing.T) {
	const n = 8 * MiB
	gr, err := gzip.NewReader(bytes.NewReader(TarGzZeros("pad.bin", n)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gr)
	h, err := tr.Next()
	if err != nil || h.Name != "pad.bin" || h.Size != n-1024 {
		t.Fatalf("%v %+v", err, h)
	}
	var z zerosReader
	if _, err := io.Copy(&z, tr); err != nil || z.n != n-1024 {
		t.Fatalf("tar entry: %d bytes, %v", z.n, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("after the entry: %v", err)
	}
	if _, err := io.Copy(io.Discard, gr); err != nil { // checks CRC and size
		t.Fatal(err)
	}
	b := Bzip2Zeros(n)
	z = zerosReader{}
	if _, err := io.Copy(&z, bzip2.NewReader(bytes.NewReader(b))); err != nil || z.n != n {
		t.Fatalf("bzip2: %d bytes, %v", z.n, err)
	}
}
