package content

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// sniffBytes is how much of an archive entry is decompressed to identify it.
const sniffBytes = 4096

// listArchive lists the entries of an archive attachment as further attachments with
// InArchive set, opening nested archives up to MaxArchiveDepth. depth is the nesting
// level of a (1 for an archive attached to the message).
func (w *walker) listArchive(a *Attachment, data []byte, kind string, depth int) {
	a.Archive = kind
	container := a.Name
	if container == "" {
		container = "(" + kind + ")"
	}
	if a.InArchive != "" {
		container = a.InArchive + "/" + container
	}
	switch kind {
	case "zip":
		w.listZip(a, data, container, depth)
	case "gzip":
		w.listGzip(a, data, container, depth)
	case "bzip2":
		w.listBzip2(a, data, container, depth)
	case "tar":
		w.listTar(a, data, container, depth)
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

// readEntry decompresses at most max bytes (and the remaining budget) from r.
func (w *walker) readEntry(r io.Reader, max int64) ([]byte, bool) {
	budget := int64(w.lim.MaxUncompressedSize) - w.uncompressed
	over := false
	if max > budget {
		max = budget
		over = true
	}
	if max <= 0 {
		return nil, true
	}
	b, _ := io.ReadAll(io.LimitReader(r, max))
	w.uncompressed += int64(len(b))
	return b, over && int64(len(b)) == max
}

// admitEntry counts one entry against MaxArchiveEntries.
func (w *walker) admitEntry(a *Attachment) bool {
	if w.archiveEntries >= w.lim.MaxArchiveEntries {
		a.reason("archive_limit")
		w.limit(a.Path, "archive_limit")
		return false
	}
	w.archiveEntries++
	return true
}

// inspectEntry sniffs an entry's content and lists it if it is a nested archive.
func (w *walker) inspectEntry(parent, e *Attachment, open func() (io.Reader, error), size int64, depth int) {
	r, err := open()
	if err != nil {
		e.reason("unsupported_method")
		return
	}
	head, _ := w.readEntry(r, sniffBytes)
	s := sniff(head)
	full := head
	if (s.archive != "" && depth < w.lim.MaxArchiveDepth) || s.family == "ole" {
		rest, over := w.readEntry(r, size-int64(len(head))+1)
		if over {
			e.reason("archive_limit")
			w.limit(parent.Path, "archive_limit")
		}
		full = append(head[:len(head):len(head)], rest...)
	}
	s = e.inspect(full)
	if e.Executable {
		parent.reason("executable_inside")
	}
	if s.archive != "" {
		if depth < w.lim.MaxArchiveDepth {
			w.msg.Attachments = append(w.msg.Attachments, e)
			w.listArchive(e, full, s.archive, depth+1)
			return
		}
		e.Archive = s.archive
		e.reason("archive_limit")
		w.limit(parent.Path, "archive_limit")
	}
	w.msg.Attachments = append(w.msg.Attachments, e)
}

func (w *walker) listZip(a *Attachment, data []byte, container string, depth int) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		a.reason("corrupt_archive")
		w.malformed(a.Path, "corrupt_archive")
		return
	}
	// APPNOTE 4.4.5 method 12; implode and deflate64 stay unsupported_method.
	zr.RegisterDecompressor(12, func(r io.Reader) io.ReadCloser { return io.NopCloser(bzip2.NewReader(r)) })
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
	var total uint64
	for _, f := range zr.File {
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
		e := w.entry(a, container, name, int64(f.UncompressedSize64))
		if strings.Contains(f.Name, "..") || strings.HasPrefix(f.Name, "/") {
			e.reason("path_in_name")
			e.SuspiciousName = true
		}
		total += f.UncompressedSize64
		if f.Flags&0x1 != 0 || f.Method == 99 { // 99: WinZip AES
			e.Encrypted = true
			e.reason("encrypted")
			a.Encrypted = true
			a.reason("encrypted")
			w.msg.Attachments = append(w.msg.Attachments, e)
			continue
		}
		if f.CompressedSize64 > 0 && f.UncompressedSize64 > 1<<20 &&
			f.UncompressedSize64/f.CompressedSize64 > uint64(w.lim.MaxRatio) {
			e.Bomb = true
			e.reason("zip_bomb")
			a.Bomb = true
			a.reason("zip_bomb")
		}
		f := f
		w.inspectEntry(a, e, func() (io.Reader, error) { return f.Open() }, int64(f.UncompressedSize64), depth)
	}
	if total > 1<<20 && total/uint64(len(data)+1) > uint64(w.lim.MaxRatio) {
		a.Bomb = true
		a.reason("zip_bomb")
	}
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

func (w *walker) listGzip(a *Attachment, data []byte, container string, depth int) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		a.reason("corrupt_archive")
		w.malformed(a.Path, "corrupt_archive")
		return
	}
	if !w.admitEntry(a) {
		return
	}
	name := zr.Name
	if name == "" {
		name = strings.TrimSuffix(strings.TrimSuffix(a.Name, ".gz"), ".tgz")
		if strings.HasSuffix(a.Name, ".tgz") {
			name += ".tar"
		}
	}
	zr.Multistream(true)
	e := w.entry(a, container, name, 0)
	// The size is only known by decompressing: do it within the budget, keeping what
	// is needed for sniffing and nested listing.
	out, over := w.readEntry(zr, int64(w.lim.MaxUncompressedSize))
	e.Size = int64(len(out))
	if over || (len(out) > 1<<20 && len(out)/(len(data)+1) > w.lim.MaxRatio) {
		e.Bomb = true
		e.reason("zip_bomb")
		a.Bomb = true
		a.reason("zip_bomb")
	}
	// A compression layer is not a level of archive nesting: foo.tar.gz is one archive.
	w.inspectEntry(a, e, func() (io.Reader, error) { return bytes.NewReader(out), nil }, int64(len(out)), depth-1)
}

func (w *walker) listTar(a *Attachment, data []byte, container string, depth int) {
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			a.reason("corrupt_archive")
			w.malformed(a.Path, "corrupt_archive")
			return
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != 0 /* old-style regular file */ {
			continue
		}
		if !w.admitEntry(a) {
			return
		}
		e := w.entry(a, container, h.Name, h.Size)
		if strings.Contains(h.Name, "..") || strings.HasPrefix(h.Name, "/") {
			e.reason("path_in_name")
			e.SuspiciousName = true
		}
		w.inspectEntry(a, e, func() (io.Reader, error) { return tr, nil }, h.Size, depth)
	}
}

func (w *walker) listBzip2(a *Attachment, data []byte, container string, depth int) {
	if !w.admitEntry(a) {
		return
	}
	name := strings.TrimSuffix(strings.TrimSuffix(a.Name, ".bz2"), ".tbz")
	if strings.HasSuffix(a.Name, ".tbz") {
		name += ".tar"
	}
	e := w.entry(a, container, name, 0)
	out, over := w.readEntry(bzip2.NewReader(bytes.NewReader(data)), int64(w.lim.MaxUncompressedSize))
	e.Size = int64(len(out))
	if over || (len(out) > 1<<20 && len(out)/(len(data)+1) > w.lim.MaxRatio) {
		e.Bomb = true
		e.reason("zip_bomb")
		a.Bomb = true
		a.reason("zip_bomb")
	}
	w.inspectEntry(a, e, func() (io.Reader, error) { return bytes.NewReader(out), nil }, int64(len(out)), depth-1)
}
