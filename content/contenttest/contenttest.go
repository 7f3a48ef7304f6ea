// Package contenttest builds hostile attachments for tests, cheaply: decompression bombs
// of any expanded size (10 GiB and more) without compressing, or holding, what they
// expand to, 42.zip-style nests, and the MIME and archive shapes that push the content
// walk to each of its limits.
//
// A bomb's deflate stream is one compressed MiB of zeros repeated: a deflate block
// flushed with a sync marker ends on a byte boundary, and a block whose back-references
// only ever point at zeros decodes the same after any run of zeros, so the stream for
// n MiB is the first block, the repeated block n-1 times and an empty final block, about
// 1 KiB per MiB. Checksums of the zeros are computed with the CRC-32 shift operator
// (zlib's crc32_combine), not by running over them.
package contenttest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
)

// MiB and GiB, for sizes.
const (
	MiB = 1 << 20
	GiB = 1 << 30
)

var (
	segOnce          sync.Once
	segFirst, segRep []byte
)

// segments compresses one MiB of zeros twice in one stream, each flushed: the first as
// a stream starts, the second as it continues after zeros.
func segments() ([]byte, []byte) {
	segOnce.Do(func() {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		zeros := make([]byte, MiB)
		w.Write(zeros)
		w.Flush()
		segFirst = bytes.Clone(buf.Bytes())
		mark := buf.Len()
		w.Write(zeros)
		w.Flush()
		segRep = bytes.Clone(buf.Bytes()[mark:])
	})
	return segFirst, segRep
}

// DeflateZeros returns a raw deflate stream (RFC 1951) that inflates to n zero bytes, n
// a multiple of MiB (at least one MiB), and the CRC-32 of those bytes. It is about n/1024
// bytes long.
func DeflateZeros(n int64) ([]byte, uint32) {
	if n < MiB || n%MiB != 0 {
		panic(fmt.Sprintf("contenttest: DeflateZeros(%d): not a positive multiple of 1 MiB", n))
	}
	first, rep := segments()
	k := n / MiB
	out := make([]byte, 0, int64(len(first))+(k-1)*int64(len(rep))+2)
	out = append(out, first...)
	for i := int64(1); i < k; i++ {
		out = append(out, rep...)
	}
	// An empty final block with fixed codes: BFINAL=1, BTYPE=01, end-of-block.
	out = append(out, 0x03, 0x00)
	return out, ZerosCRC(n)
}

// GzipZeros returns a gzip file (RFC 1952) of n zero bytes, n a multiple of MiB, named
// name in its header.
func GzipZeros(name string, n int64) []byte {
	d, crc := DeflateZeros(n)
	var b bytes.Buffer
	b.Write([]byte{0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 0xff}) // FNAME set, OS unknown
	b.WriteString(name)
	b.WriteByte(0)
	b.Write(d)
	binary.Write(&b, binary.LittleEndian, crc)
	binary.Write(&b, binary.LittleEndian, uint32(n))
	return b.Bytes()
}

// Gzip compresses data (fast: Go's best compression is very slow on low-entropy data).
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// ZipZeros returns a zip with one deflated entry name of n zero bytes (n a multiple of
// MiB), sizes and CRC declared truthfully.
func ZipZeros(name string, n int64) []byte {
	d, crc := DeflateZeros(n)
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(len(d)), UncompressedSize64: uint64(n)})
	if err != nil {
		panic(err)
	}
	w.Write(d)
	zw.Close()
	return b.Bytes()
}

// Entry is one file of an archive.
type Entry struct {
	Name string
	Data []byte
}

// Zip returns a zip of the entries, deflated fast.
func Zip(entries ...Entry) []byte { return zipLevel(flate.BestSpeed, entries...) }

func zipLevel(level int, entries ...Entry) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, level)
	})
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.Name, Method: zip.Deflate})
		if err != nil {
			panic(err)
		}
		w.Write(e.Data)
	}
	zw.Close()
	return b.Bytes()
}

// Tar returns a tar of the entries.
func Tar(entries ...Entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Data)), Typeflag: tar.TypeReg})
		tw.Write(e.Data)
	}
	tw.Close()
	return b.Bytes()
}

// Nest returns a 42.zip-style nest: depth levels of zips, each holding fanout copies of
// the level below (named 0.zip, 1.zip, ...); the innermost level is the zip innermost
// (42.zip's is a zip of a 4.3 GB file: ZipZeros("0.dat", 4*GiB)).
func Nest(depth, fanout int, innermost []byte) []byte {
	cur := innermost
	for d := 1; d < depth; d++ {
		entries := make([]Entry, fanout)
		for i := range entries {
			entries[i] = Entry{Name: fmt.Sprintf("%d.zip", i), Data: cur}
		}
		// Fast compression misses the repeats of compressed data that keep a nest small.
		cur = zipLevel(flate.DefaultCompression, entries...)
	}
	return cur
}

// ZipLevels returns leaf inside depth zips, one in another (depth 1: a zip of leaf).
func ZipLevels(depth int, leaf Entry) []byte {
	cur := Zip(leaf)
	for d := 1; d < depth; d++ {
		cur = Zip(Entry{Name: fmt.Sprintf("level%d.zip", depth-d), Data: cur})
	}
	return cur
}

// ManyEntries returns a zip of n small text files followed by last.
func ManyEntries(n int, last Entry) []byte {
	entries := make([]Entry, 0, n+1)
	for i := 0; i < n; i++ {
		entries = append(entries, Entry{Name: fmt.Sprintf("f%04d.txt", i), Data: []byte("x")})
	}
	return Zip(append(entries, last)...)
}

// LowEntropy returns n pseudo-random bytes drawn from two letters: data that deflate
// compresses only about sevenfold, far below any bomb ratio.
func LowEntropy(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = 'a' + byte(v>>j&1)
		}
	}
	return b
}

// TarGz returns a gzip-compressed tar of the entries, compressed fast (the level at
// which padding is cheapest to produce).
func TarGz(entries ...Entry) []byte {
	var b bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	tw := tar.NewWriter(gw)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Data)), Typeflag: tar.TypeReg})
		tw.Write(e.Data)
	}
	tw.Close()
	gw.Close()
	return b.Bytes()
}

// PE returns a harmless 512-byte PE stub: an MZ header whose e_lfanew points at a
// "PE\0\0" signature, and nothing that runs.
func PE() []byte {
	b := make([]byte, 512)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3C:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	copy(b[0x100:], "harmless test stub, not a program")
	return b
}

// Base64Lines encodes b in base64 lines of 76 characters ending in CRLF.
func Base64Lines(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	out.Grow(len(enc) + len(enc)/76*2 + 2)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc + "\r\n")
	return out.String()
}

// Attachment is one MIME part: its file name, content type and content.
type Attachment struct {
	Name, Type string
	Data       []byte
}

// Message returns a multipart/mixed message from from to to with a text part and the
// attachments, base64-encoded. extraHeader (CRLF-terminated lines, or "") goes into the
// top-level header.
func Message(from, to, subject, extraHeader string, atts ...Attachment) string {
	var b strings.Builder
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n")
	b.WriteString("Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@contenttest.invalid>\r\n")
	b.WriteString(extraHeader)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n")
	b.WriteString("--=_b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attachment.\r\n")
	for _, a := range atts {
		b.WriteString("--=_b\r\nContent-Type: " + a.Type + "; name=\"" + a.Name + "\"\r\n")
		b.WriteString("Content-Disposition: attachment; filename=\"" + a.Name + "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		b.WriteString(Base64Lines(a.Data))
	}
	b.WriteString("--=_b--\r\n")
	return b.String()
}

// ExePart is the MIME part of invoice.exe (PE), boundary delimiter excluded.
func ExePart() string {
	return "Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n" +
		"Content-Disposition: attachment; filename=\"invoice.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		Base64Lines(PE())
}

// ManyParts returns a message whose invoice.exe comes after n empty text parts.
func ManyParts(from, to string, n int) string {
	var b strings.Builder
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: many parts\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n")
	for i := 0; i < n; i++ {
		b.WriteString("--=_b\r\nContent-Type: text/plain\r\n\r\n.\r\n")
	}
	b.WriteString("--=_b\r\n" + ExePart() + "--=_b--\r\n")
	return b.String()
}

// DeepParts returns a message whose invoice.exe sits below n nested multiparts.
func DeepParts(from, to string, n int) string {
	var b strings.Builder
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: deep parts\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"=_%d\"\r\n\r\n--=_%d\r\n", i, i)
	}
	b.WriteString(ExePart())
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--=_%d--\r\n", i)
	}
	return b.String()
}

// PaddedPartHeader returns a message whose invoice.exe part has pad bytes of header
// fields before its Content-Type.
func PaddedPartHeader(from, to string, pad int) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: padded part\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\n" + Padding(pad) + ExePart() + "--=_b--\r\n"
}

// PaddedHeader returns a message with pad bytes of header fields before its own
// Content-Type and an invoice.exe attachment.
func PaddedHeader(from, to string, pad int) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: padded header\r\n" + Padding(pad) +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\n" + ExePart() + "--=_b--\r\n"
}

// Padding returns at least n bytes of X-Padding header fields, 78 bytes a line.
func Padding(n int) string {
	line := "X-Padding: " + strings.Repeat("p", 65) + "\r\n"
	return strings.Repeat(line, (n+len(line)-1)/len(line))
}

// TarGzZeros returns a .tar.gz whose tar holds one file, name, of n zero bytes (n a
// multiple of MiB, at least 2 MiB): a tar header, then zeros (the file and the tar's end
// blocks), deflated like DeflateZeros.
func TarGzZeros(name string, n int64) []byte {
	if n < 2*MiB || n%MiB != 0 {
		panic(fmt.Sprintf("contenttest: TarGzZeros(%d): not a multiple of 1 MiB above 1 MiB", n))
	}
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: n - 1024, Typeflag: tar.TypeReg})
	tw.Flush()
	// The header, then n zeros: the file's n-1024 and the two zero blocks ending a tar.
	var d bytes.Buffer
	w, _ := flate.NewWriter(&d, flate.BestCompression)
	w.Write(hdr.Bytes())
	w.Write(make([]byte, MiB))
	w.Flush()
	_, rep := segments()
	for i := int64(1); i < n/MiB; i++ {
		d.Write(rep) // after a MiB of zeros, as segments made it
	}
	d.Write([]byte{0x03, 0x00})
	crc := crcExtend(crc32.ChecksumIEEE(hdr.Bytes()), n)
	var b bytes.Buffer
	b.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	b.Write(d.Bytes())
	binary.Write(&b, binary.LittleEndian, crc)
	binary.Write(&b, binary.LittleEndian, uint32(int64(hdr.Len())+n))
	return b.Bytes()
}

// bzip2MiB is a bzip2 stream of one MiB of zeros (bzip2 -9), 45 bytes.
var bzip2MiB = []byte("BZh91AY&SY8W\x1c\xe5\x00\x08\x08@\x00\xc0\x04\x00\x08 \x000\xcc\x05)\xa6\x08\x06\xc4 \x1e.\xe4\x8ap\xa1 p\xae9\xca")

// Bzip2Zeros returns a .bz2 of n zero bytes, n a multiple of MiB: concatenated streams
// (which bzip2 -d and Go's reader both accept) of one MiB each.
func Bzip2Zeros(n int64) []byte {
	if n < MiB || n%MiB != 0 {
		panic(fmt.Sprintf("contenttest: Bzip2Zeros(%d): not a positive multiple of 1 MiB", n))
	}
	return bytes.Repeat(bzip2MiB, int(n/MiB))
}

// ZipOfBzip2 returns a zip of n entries stored with method 12 (bzip2), each the bzip2
// stream of one MiB of zeros declaring a size of 4 KiB: cheap to send, and each costs
// a reader a whole bzip2 block to look at.
func ZipOfBzip2(n int) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for i := 0; i < n; i++ {
		w, err := zw.CreateRaw(&zip.FileHeader{Name: fmt.Sprintf("f%04d.txt", i), Method: 12,
			CompressedSize64: uint64(len(bzip2MiB)), UncompressedSize64: 4096})
		if err != nil {
			panic(err)
		}
		w.Write(bzip2MiB)
	}
	zw.Close()
	return b.Bytes()
}

// ZerosCRC returns the CRC-32 (IEEE) of n zero bytes without reading them.
func ZerosCRC(n int64) uint32 { return crcExtend(0, n) }

// crcExtend returns the CRC-32 of the data whose CRC is crc followed by n zero bytes.
func crcExtend(crc uint32, n int64) uint32 {
	// The register after a zero byte is a linear function of the register before it;
	// apply its n-th power (by squaring) to the register, which crc32 keeps inverted.
	var op [32]uint32 // one zero bit
	op[0] = 0xedb88320
	for i := 1; i < 32; i++ {
		op[i] = 1 << (i - 1)
	}
	var sq [32]uint32
	square(&sq, &op) // 2 bits
	square(&op, &sq) // 4 bits
	square(&sq, &op) // one byte
	reg := ^crc
	m := sq
	for n > 0 {
		if n&1 != 0 {
			reg = times(&m, reg)
		}
		n >>= 1
		var next [32]uint32
		square(&next, &m)
		m = next
	}
	return ^reg
}

func times(m *[32]uint32, v uint32) uint32 {
	var sum uint32
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			sum ^= m[i]
		}
	}
	return sum
}

func square(dst, m *[32]uint32) {
	for i := range m {
		dst[i] = times(m, m[i])
	}
}
