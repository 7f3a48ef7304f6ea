package content

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/flate"
	"compress/gzip"
	"errors"
	"io"
	"path"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Archives are listed, never extracted. Every decompressor (a zip entry's method, a gzip
// or bzip2 layer) is read through an expansion, which counts the compressed bytes the
// decompressor consumed and the bytes it produced: a stream whose ratio passes
// Limits.MaxRatio stops as soon as it has produced bombFloor bytes, so a 10 GiB gzip bomb
// costs about one MiB of inflating, and every byte produced counts against
// Limits.MaxUncompressedSize for the whole message. Only what must be seen is read: the
// first sniffBytes of an entry, all of an OLE file (for macros) and all of a nested
// archive (listed in turn, up to Limits.MaxArchiveDepth). A tar inside a gzip or bzip2
// layer is listed as the stream goes, never held whole.
//
// Each archive is a level; the bytes its entries expand to (declared sizes of zip
// entries, the real output of gzip and bzip2 layers, nested archives included) are
// added to it and to every level above, and a level whose expansion passes MaxRatio
// times its own size is a bomb. That catches what no single stream shows: many entries
// that share their data (overlapping zip entries), and nests whose every layer
// compresses moderately (42.zip).

const (
	// sniffBytes is how much of an archive entry is decompressed to identify it.
	sniffBytes = 4096
	// bombFloor is the expansion below which no ratio makes a bomb: a page of zeros in a
	// zip is ordinary.
	bombFloor = 1 << 20
	// maxDeclared caps the sizes an archive declares, so that sums cannot overflow.
	maxDeclared = 1 << 50
)

var (
	errBomb   = errors.New("content: archive expands over max_ratio")
	errBudget = errors.New("content: max_uncompressed_size reached")
)

// level is one archive being listed.
type level struct {
	a        *Attachment
	size     int64 // the archive's own bytes
	expanded int64 // what its entries expand to, nested archives included
	up       *level
	root     *level
	stop     bool // root only: a bomb was found below, stop listing
}

// halted reports whether listing below l must stop.
func (l *level) halted() bool { return l.root.stop }

// expand adds n expanded bytes to l and every level above it, and reports a bomb (of
// entry e, which may be nil) when one of them passes the ratio.
func (w *walker) expand(l *level, e *Attachment, n int64) bool {
	for x := l; x != nil; x = x.up {
		x.expanded = min(x.expanded+n, maxDeclared)
		if x.expanded > bombFloor && x.expanded/int64(w.lim.MaxRatio) > x.size {
			w.bomb(l, e)
			return false
		}
	}
	return true
}

// bomb marks entry e (when not nil) and the archives holding it as bombs, records the
// limit and stops the listing of the attachment.
func (w *walker) bomb(l *level, e *Attachment) {
	if e != nil {
		e.Bomb = true
		e.reason("zip_bomb")
	}
	for x := l; x != nil; x = x.up {
		x.a.Bomb = true
		x.a.reason("zip_bomb")
	}
	l.root.stop = true
	w.limit(l.root.a.Path, LimitRatio)
}

// counter counts the compressed bytes a decompressor consumes. It is an io.ByteReader,
// so flate, gzip and bzip2 read from it without buffering ahead of what they use.
type counter struct {
	r *bufio.Reader
	n int64
}

var bufioPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func newCounter(r io.Reader) *counter {
	br := bufioPool.Get().(*bufio.Reader)
	br.Reset(r)
	return &counter{r: br}
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *counter) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// release returns the buffer; the counter must not be read again.
func (c *counter) release() {
	if c.r != nil {
		c.r.Reset(nil)
		bufioPool.Put(c.r)
		c.r = nil
	}
}

// flateReaders recycles inflaters (and their 32 KiB windows) across zip entries.
var flateReaders sync.Pool

type pooledFlate struct{ io.ReadCloser }

func (f *pooledFlate) Close() error {
	err := f.ReadCloser.Close()
	flateReaders.Put(f.ReadCloser)
	return err
}

func newFlate(r io.Reader) io.ReadCloser {
	if fr, ok := flateReaders.Get().(io.ReadCloser); ok {
		if err := fr.(flate.Resetter).Reset(r, nil); err == nil {
			return &pooledFlate{fr}
		}
	}
	return &pooledFlate{flate.NewReader(r)}
}

// expansion is the output of one decompressor, read under the limits.
type expansion struct {
	w     *walker
	l     *level      // the archive the stream belongs to
	e     *Attachment // the entry it produces
	src   io.Reader   // the decompressor
	in    *counter    // what it consumed
	out   int64       // what it produced
	count bool        // add the output to the levels' expansion (gzip and bzip2 layers)
	err   error       // sticky
}

func (w *walker) expansion(l *level, e *Attachment, src io.Reader, in *counter, count bool) *expansion {
	return &expansion{w: w, l: l, e: e, src: src, in: in, count: count}
}

func (x *expansion) Read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	if x.l.halted() {
		x.err = errBomb
		return 0, x.err
	}
	w := x.w
	budget := int64(w.lim.MaxUncompressedSize) - w.uncompressed
	if budget <= 0 {
		// Whether the stream ends here: one more byte tells (and is not kept).
		var one [1]byte
		if n, err := io.ReadFull(x.src, one[:]); n == 0 && err != nil {
			x.fail(err)
			return 0, x.err
		}
		x.err = errBudget
		w.limit(x.l.root.a.Path, LimitUncompressedSize)
		return 0, x.err
	}
	if int64(len(p)) > budget {
		p = p[:budget]
	}
	n, err := x.src.Read(p)
	x.out += int64(n)
	w.uncompressed += int64(n)
	if x.count && n > 0 && !w.expand(x.l, x.e, int64(n)) {
		x.err = errBomb
		return n, x.err
	}
	if x.out > bombFloor && x.out/int64(w.lim.MaxRatio) > max(x.in.n, 1) {
		w.bomb(x.l, x.e)
		x.err = errBomb
		return n, x.err
	}
	if err != nil {
		x.fail(err)
	}
	return n, err
}

// fail records the decompressor's error: io.EOF ends the stream, anything else means the
// compressed data is corrupt.
func (x *expansion) fail(err error) {
	x.err = err
	if err != io.EOF {
		x.e.reason("corrupt_archive")
		x.w.malformed(x.l.a.Path, "corrupt_archive")
	}
}

// stopped reports whether the stream ended on a limit rather than at its end.
func (x *expansion) stopped() bool { return x.err == errBomb || x.err == errBudget }

// listArchive lists the entries of archive attachment a (data is its content, kind what
// sniff said) as further attachments with InArchive set; depth is its nesting level (1
// for an archive attached to the message) and up the archive holding it (nil for one
// attached to the message).
func (w *walker) listArchive(a *Attachment, data []byte, kind string, depth int, up *level) {
	a.Archive = kind
	l := &level{a: a, size: int64(len(data)), up: up}
	l.root = l
	if up != nil {
		l.root = up.root
	}
	container := a.Name
	if container == "" {
		container = "(" + kind + ")"
	}
	if a.InArchive != "" {
		container = a.InArchive + "/" + container
	}
	switch kind {
	case "zip":
		w.listZip(l, data, container, depth)
	case "gzip", "bzip2":
		w.listCompressed(l, data, kind, container, depth)
	case "tar":
		w.listTar(l, a, bytes.NewReader(data), container, depth)
	}
}

// entry builds the attachment record of one archive entry.
func (w *walker) entry(parent *Attachment, container, name string, size int64) *Attachment {
	e := &Attachment{Path: parent.Path, EntryPath: name, InArchive: container, Size: size}
	base := path.Base(strings.ReplaceAll(name, "\\", "/"))
	if base == "." || base == "/" {
		base = ""
	}
	e.setNames([]string{base})
	parent.ArchiveEntries++
	return e
}

// admitEntry counts one entry against MaxArchiveEntries.
func (w *walker) admitEntry(a *Attachment) bool {
	if w.archiveEntries >= w.lim.MaxArchiveEntries {
		a.reason("archive_limit")
		w.limit(a.Path, LimitArchiveEntries)
		return false
	}
	w.archiveEntries++
	return true
}

// readUpTo reads at most n bytes from r, returning what it got.
func readUpTo(r io.Reader, n int) []byte {
	b := make([]byte, n)
	got, _ := io.ReadFull(r, b)
	return b[:got]
}

// inspectEntry sniffs entry e of archive l (held by the attachment owner) from r and
// lists it in turn when it is an archive.
func (w *walker) inspectEntry(l *level, owner, e *Attachment, r io.Reader, depth int) {
	head := readUpTo(r, sniffBytes)
	full := head
	if len(head) == sniffBytes && sniff(head).family == "ole" {
		// Macros are found by their stream names, anywhere in the file.
		rest, _ := io.ReadAll(r)
		full = append(head[:len(head):len(head)], rest...)
	}
	s := e.inspect(full)
	if e.Executable {
		owner.reason("executable_inside")
	}
	w.msg.Attachments = append(w.msg.Attachments, e)
	if s.archive != "" {
		w.nested(l, e, s.archive, io.MultiReader(bytes.NewReader(head), r), depth+1)
	}
}

// nested lists entry e of archive l, an archive of the given kind read from r, at depth.
func (w *walker) nested(l *level, e *Attachment, kind string, r io.Reader, depth int) {
	e.Archive = kind
	if depth > w.lim.MaxArchiveDepth {
		e.reason("archive_limit")
		w.limit(e.Path, LimitArchiveDepth)
		return
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return // a limit or corrupt data, recorded by the expansion
	}
	w.listArchive(e, data, kind, depth, l)
}

func (w *walker) listZip(l *level, data []byte, container string, depth int) {
	a := l.a
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		a.reason("corrupt_archive")
		w.malformed(a.Path, "corrupt_archive")
		return
	}
	// Each entry's decompressor reads through a counter, so that its ratio is measured
	// on what it really consumed. zip's own reader still checks the CRC and that no
	// entry yields more than its declared size.
	var in *counter
	zr.RegisterDecompressor(zip.Store, func(r io.Reader) io.ReadCloser {
		in = newCounter(r)
		return io.NopCloser(in)
	})
	zr.RegisterDecompressor(zip.Deflate, func(r io.Reader) io.ReadCloser {
		in = newCounter(r)
		return newFlate(in)
	})
	// APPNOTE 4.4.5 method 12; implode and deflate64 stay unsupported_method.
	zr.RegisterDecompressor(12, func(r io.Reader) io.ReadCloser {
		in = newCounter(r)
		return io.NopCloser(bzip2.NewReader(in))
	})
	// An OOXML or OpenDocument file is a zip of XML: look for macros, do not list it.
	office, jar := false, false
	for _, f := range zr.File {
		switch {
		case f.Name == "[Content_Types].xml" || f.Name == "mimetype":
			office = true
		case f.Name == "META-INF/MANIFEST.MF":
			jar = true
		}
	}
	if office || jar {
		for _, f := range zr.File {
			if strings.EqualFold(path.Base(f.Name), "vbaProject.bin") || strings.HasPrefix(f.Name, "Basic/") {
				a.Macros, a.Executable, a.ExecKind = true, true, "office_macro"
				a.reason("executable")
			}
		}
		if office {
			a.DetectedType = ooxmlType(zr)
			a.Archive = ""
			return
		}
		a.DetectedType = "application/java-archive"
		a.Executable, a.ExecKind = true, "java"
		a.reason("executable")
	}
	for _, f := range zr.File {
		if l.halted() {
			return
		}
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		if !w.admitEntry(a) {
			return
		}
		name := f.Name
		if !utf8.ValidString(name) {
			// Without the UTF-8 flag (APPNOTE 4.4.4 bit 11) names are CP437.
			if d, err := charmap.CodePage437.NewDecoder().String(name); err == nil {
				name = d
			}
		}
		size := int64(min(f.UncompressedSize64, maxDeclared))
		e := w.entry(a, container, name, size)
		if strings.Contains(f.Name, "..") || strings.HasPrefix(f.Name, "/") {
			e.reason("path_in_name")
			e.SuspiciousName = true
		}
		// What the entry says it expands to, checked before a byte is inflated: zip's
		// reader refuses to produce more than that.
		if size > bombFloor && size/int64(w.lim.MaxRatio) > int64(min(f.CompressedSize64, maxDeclared)) {
			w.bomb(l, e)
		}
		if l.halted() || !w.expand(l, e, size) {
			w.msg.Attachments = append(w.msg.Attachments, e)
			return
		}
		if f.Flags&0x1 != 0 || f.Method == 99 { // 99: WinZip AES
			e.Encrypted = true
			e.reason("encrypted")
			a.Encrypted = true
			a.reason("encrypted")
			w.msg.Attachments = append(w.msg.Attachments, e)
			continue
		}
		if f.Method == 12 {
			w.uncompressed += bzip2Cost(f)
		}
		if w.uncompressed >= int64(w.lim.MaxUncompressedSize) {
			// Nothing more may be inflated; the names are still listed.
			e.reason("archive_limit")
			w.limit(a.Path, LimitUncompressedSize)
			w.msg.Attachments = append(w.msg.Attachments, e)
			continue
		}
		in = nil
		rc, err := f.Open()
		if err != nil || in == nil {
			e.reason("unsupported_method")
			w.msg.Attachments = append(w.msg.Attachments, e)
			continue
		}
		w.inspectEntry(l, a, e, w.expansion(l, e, rc, in, false), depth)
		rc.Close()
		in.release()
	}
}

// bzip2Cost is what opening a bzip2 stream costs: bzip2 decodes a whole block (up to
// its header's level times 100 kB, and allocates four bytes a byte for it) before it
// yields the first byte, so a zip of a thousand tiny bzip2 entries would cost seconds
// of CPU and gigabytes of allocation to sniff. The block size counts against
// max_uncompressed_size as if it had been decompressed, which it is.
func bzip2Cost(f *zip.File) int64 {
	var h [4]byte
	if r, err := f.OpenRaw(); err == nil {
		if _, err := io.ReadFull(r, h[:]); err == nil {
			return bzip2BlockSize(h[:])
		}
	}
	return 900_000
}

// bzip2BlockSize reads the block size from a bzip2 stream's header ("BZh" and the level).
func bzip2BlockSize(h []byte) int64 {
	if len(h) >= 4 && string(h[:3]) == "BZh" && h[3] >= '1' && h[3] <= '9' {
		return int64(h[3]-'0') * 100_000
	}
	return 900_000
}

func ooxmlType(zr *zip.Reader) string {
	for _, f := range zr.File {
		switch {
		case strings.HasPrefix(f.Name, "word/"):
			return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
		case strings.HasPrefix(f.Name, "xl/"):
			return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
		case strings.HasPrefix(f.Name, "ppt/"):
			return "application/vnd.openxmlformats-officedocument.presentationml.presentation"
		case f.Name == "mimetype":
			return "application/vnd.oasis.opendocument"
		}
	}
	return "application/zip"
}

// listCompressed lists a gzip or bzip2 file: one entry, its decompressed content. A
// compression layer around a tar is not a level of nesting (foo.tar.gz is one archive);
// any other archive inside is one level deeper.
func (w *walker) listCompressed(l *level, data []byte, kind, container string, depth int) {
	a := l.a
	if !w.admitEntry(a) {
		return
	}
	in := newCounter(bytes.NewReader(data))
	defer in.release()
	var dec io.Reader
	name := ""
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			a.reason("corrupt_archive")
			w.malformed(a.Path, "corrupt_archive")
			return
		}
		zr.Multistream(true)
		dec, name = zr, zr.Name
		if name == "" {
			name = strings.TrimSuffix(strings.TrimSuffix(a.Name, ".gz"), ".tgz")
			if strings.HasSuffix(a.Name, ".tgz") {
				name += ".tar"
			}
		}
	case "bzip2":
		w.uncompressed += bzip2BlockSize(data)
		if w.uncompressed >= int64(w.lim.MaxUncompressedSize) {
			a.reason("archive_limit")
			w.limit(a.Path, LimitUncompressedSize)
			return
		}
		dec = bzip2.NewReader(in)
		name = strings.TrimSuffix(strings.TrimSuffix(a.Name, ".bz2"), ".tbz")
		if strings.HasSuffix(a.Name, ".tbz") {
			name += ".tar"
		}
	}
	e := w.entry(a, container, name, 0)
	x := w.expansion(l, e, dec, in, true)
	head := readUpTo(x, sniffBytes)
	s := e.inspect(head)
	if e.Executable {
		a.reason("executable_inside")
	}
	w.msg.Attachments = append(w.msg.Attachments, e)
	rest := io.MultiReader(bytes.NewReader(head), x)
	switch {
	case s.archive == "tar":
		e.Archive = "tar"
		inner := e.Name
		if inner == "" {
			inner = "(tar)"
		}
		w.listTar(l, e, rest, container+"/"+inner, depth)
	case s.archive != "":
		w.nested(l, e, s.archive, rest, depth+1)
	}
	// Whatever is left (the rest of a plain file, data after a tar's end) is inflated
	// too: that is where a bomb's zeros are.
	if !x.stopped() {
		io.Copy(io.Discard, x)
	}
	e.Size = x.out
}

// listTar lists a tar read from r as entries of owner (the tar, or the gzip layer's
// entry holding it), in archive l.
func (w *walker) listTar(l *level, owner *Attachment, r io.Reader, container string, depth int) {
	tr := tar.NewReader(r)
	for !l.halted() {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if !errors.Is(err, errBomb) && !errors.Is(err, errBudget) {
				owner.reason("corrupt_archive")
				w.malformed(owner.Path, "corrupt_archive")
			}
			return
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != 0 /* old-style regular file */ {
			continue
		}
		if !w.admitEntry(owner) {
			return
		}
		e := w.entry(owner, container, h.Name, max(h.Size, 0))
		if strings.Contains(h.Name, "..") || strings.HasPrefix(h.Name, "/") {
			e.reason("path_in_name")
			e.SuspiciousName = true
		}
		w.inspectEntry(l, owner, e, tr, depth)
	}
}
