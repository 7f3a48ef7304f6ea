package imapd

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"

	"github.com/portcullis-mail/portcullis/store"
)

// Limits on the work of one FETCH (issue 15 item 9: one FETCH with 200 partial sections
// kept the server busy for a minute, since every section read and parsed the message
// again). A message is now parsed at most once per command (and its structure cached),
// and sections are ranges of its file; these bound what remains.
const (
	// maxFetchSections bounds the BODY[], BINARY[] and BINARY.SIZE[] items of one FETCH.
	// Clients ask for a handful (a part and its MIME header per attachment at most).
	maxFetchSections = 100
	// maxHeaderFieldNames bounds the names of one HEADER.FIELDS or HEADER.FIELDS.NOT.
	// Thunderbird asks for about 15.
	maxHeaderFieldNames = 200
	copyBufSize         = 32 << 10
)

// rng is a range of a message: [a, b).
type rng struct{ a, b pos }

func (r rng) len() int64 { return r.b.v - r.a.v }

// source is what one section is made of: a header (raw or filtered by field names), a
// line end when the header had no empty line, and a body (raw or transfer-decoded).
type source struct {
	hdr     rng
	filter  *fieldFilter
	suffix  string
	body    rng
	decode  bool   // BINARY: undo the body's transfer encoding
	cte     string // the encoding to undo
	bodyOf  *part  // the entity whose body is decoded (caches the decoded size)
	hasBody bool
}

// fieldFilter keeps (or, with not, drops) the header fields named in names (lower case).
type fieldFilter struct {
	names map[string]bool
	not   bool
}

func newFieldFilter(fields []string, not bool) *fieldFilter {
	f := &fieldFilter{names: make(map[string]bool, len(fields)), not: not}
	for _, n := range fields {
		f.names[strings.ToLower(strings.TrimSpace(n))] = true
	}
	return f
}

// keeps reports whether the field that starts with line is part of the output.
func (f *fieldFilter) keeps(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false // not a field (imapserver refused the whole header)
	}
	name := strings.ToLower(string(bytes.TrimSpace(line[:i])))
	if name == "" {
		return false
	}
	return f.names[name] != f.not
}

// fetchCmd is the state of one FETCH command: the work it did and may do, and its copy
// buffer.
type fetchCmd struct {
	work, maxWork int64
	name          string // the command, for overLimit's reply: "FETCH" when empty
	buf           []byte
	// vanished says a message asked for was expunged by another session meanwhile: the
	// command ends NO [EXPUNGEISSUED].
	vanished bool
	// unreadable says a message's file failed to read (not because it is gone) after
	// the size of a literal went out, so the client got padding: NO [SERVERBUG].
	unreadable bool
}

// readFailed records why a message's file could not be read for a response already
// started: it is gone (expunged by another session; on NFS an open file another client
// removed reads ESTALE), or it failed otherwise.
func (c *fetchCmd) readFailed(err error) {
	if gone(err) {
		c.vanished = true
	} else {
		c.unreadable = true
	}
}

// gone reports whether err says the message's file no longer exists.
func gone(err error) bool {
	return errors.Is(err, store.ErrNoMessage) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESTALE)
}

// testHookBeforeBody, when set by a test, runs in writeLiteral between the size of a
// section (which may have read the file) and the read of its bytes.
var testHookBeforeBody func(mf *msgFile)

// errWorkLimit ends a FETCH that would parse more than Config.MaxFetchParseSize.
func (c *fetchCmd) overLimit() error {
	if c.work <= c.maxWork {
		return nil
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
		Text: fmt.Sprintf("%s stopped after parsing %d MiB (max_fetch_parse_size); ask for fewer messages or sections at once", cmp.Or(c.name, "FETCH"), c.work>>20)}
}

// msgFile is one message FETCH answers: its file, opened on first use, and its structure.
type msgFile struct {
	s   *session
	mb  store.Mailbox
	m   store.Message
	cmd *fetchCmd
	// hold is the message's share of the memory budget (FETCH), grown while a structure
	// is parsed; nil for callers that account for memory themselves.
	hold *hold
	f    *os.File
	tree *msgTree
	// indexed says the index's sizes describe the file (they always do, unless the file
	// was changed behind the store's back); otherwise only a full parse knows its end.
	indexed bool
}

func (mf *msgFile) close() {
	if mf.f != nil {
		mf.f.Close()
		mf.f = nil
	}
}

func (mf *msgFile) open() (*os.File, error) {
	if mf.f != nil {
		return mf.f, nil
	}
	f, err := mf.s.user.Open(mf.mb, mf.m)
	if err != nil {
		return nil, err
	}
	mf.f = f
	if fi, err := f.Stat(); err == nil {
		mf.indexed = fi.Size() == mf.m.Size && mf.m.SizeCRLF >= mf.m.Size
	}
	return f, nil
}

// crlf reports whether the file has CRLF line ends only (view and file offsets agree).
func (mf *msgFile) crlf() bool {
	if mf.tree != nil {
		return mf.tree.crlf
	}
	return mf.m.Size == mf.m.SizeCRLF
}

func treeKey(user, msgKey string, full bool) string {
	if full {
		return "s\x00" + user + "\x00" + msgKey
	}
	return "h\x00" + user + "\x00" + msgKey
}

// structure returns the message's tree: with full every entity, else at least the root's
// header. It comes from the server's cache or is parsed now (and cached).
func (mf *msgFile) structure(full bool) (*msgTree, error) {
	if mf.tree != nil && (mf.tree.full || !full) {
		return mf.tree, nil
	}
	cache, user := mf.s.srv.cache, mf.s.user.Name()
	if t, ok := cache.get(treeKey(user, mf.m.Key, true)).(*msgTree); ok {
		mf.tree = t
		return t, nil
	}
	if !full {
		if t, ok := cache.get(treeKey(user, mf.m.Key, false)).(*msgTree); ok {
			mf.tree = t
			return t, nil
		}
	}
	f, err := mf.open()
	if err != nil {
		return nil, err
	}
	if !mf.indexed {
		full = true // only a full parse knows where the file ends
	}
	if h := mf.hold; h != nil {
		base := h.n
		if err := h.resize(base + parseHold(mf.m)); err != nil {
			return nil, err
		}
		defer h.resize(base)
	}
	t, scanned, err := parseTree(io.NewSectionReader(f, 0, 1<<62), !full, pos{v: mf.m.SizeCRLF, f: mf.m.Size})
	mf.cmd.work += scanned
	if err != nil {
		return nil, fmt.Errorf("imapd: parse message %d: %w", mf.m.UID, err)
	}
	mf.tree = t
	cache.put(treeKey(user, mf.m.Key, t.full), t, t.mem)
	return t, nil
}

// section returns the source of a BODY[...] section (RFC 3501 §6.4.5), resolved as
// imapserver's ExtractBodySection does; ok is false when the part does not exist (an
// empty section, as imapserver answers).
func (mf *msgFile) section(bs *imap.FetchItemBodySection) (src source, ok bool, err error) {
	if len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone && mf.tree == nil {
		// BODY[] is the whole file: no parse (what clients fetch to download a message).
		if _, err := mf.open(); err != nil {
			return src, false, err
		}
		if mf.indexed {
			src.body, src.hasBody = rng{b: pos{v: mf.m.SizeCRLF, f: mf.m.Size}}, true
			return src, true, nil
		}
	}
	t, err := mf.structure(len(bs.Part) > 0)
	if err != nil {
		return src, false, err
	}
	node, _, ok := t.resolve(bs.Part)
	if !ok {
		return src, false, nil
	}
	if len(bs.Part) > 0 && (bs.Specifier == imap.PartSpecifierHeader || bs.Specifier == imap.PartSpecifierText) {
		node = node.open()
	}
	switch bs.Specifier {
	case imap.PartSpecifierNone:
		if len(bs.Part) == 0 {
			src.body, src.hasBody = rng{node.hdr, node.end}, true
		} else {
			src.body, src.hasBody = rng{node.body, node.end}, true
		}
	case imap.PartSpecifierText:
		src.body, src.hasBody = rng{node.body, node.end}, true
	default: // HEADER, HEADER.FIELDS (.NOT), MIME
		src.hdr = rng{node.hdr, node.body}
		if !node.blank {
			src.suffix = "\r\n"
		}
		switch {
		case len(bs.HeaderFields) > 0:
			src.filter = newFieldFilter(bs.HeaderFields, false)
		case len(bs.HeaderFieldsNot) > 0:
			src.filter = newFieldFilter(bs.HeaderFieldsNot, true)
		}
		if src.filter != nil {
			src.suffix = "\r\n" // after the kept fields, as textproto.WriteHeader ends
		}
	}
	return src, true, nil
}

// binarySection returns the source of a BINARY[...] section (RFC 3516): the entity's body
// with its content transfer encoding undone (and, for the whole message, its header
// first). Unlike imapserver's ExtractBinarySection it does not convert charsets: BINARY
// undoes the transfer encoding only.
func (mf *msgFile) binarySection(partPath []int) (src source, ok bool, err error) {
	t, err := mf.structure(len(partPath) > 0)
	if err != nil {
		return src, false, err
	}
	node, _, ok := t.resolve(partPath)
	if !ok {
		return src, false, nil
	}
	if len(partPath) == 0 {
		src.hdr = rng{node.hdr, node.body}
		if !node.blank {
			src.suffix = "\r\n"
		}
	}
	src.body, src.hasBody = rng{node.body, node.end}, true
	if !strings.HasPrefix(node.mediaType, "multipart/") {
		cte := strings.ToLower(strings.TrimSpace(node.header.Get("Content-Transfer-Encoding")))
		switch cte {
		case "", "7bit", "8bit", "binary":
		case "base64", "quoted-printable":
			src.decode, src.cte, src.bodyOf = true, cte, node
		default:
			return src, false, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnknownCTE,
				Text: fmt.Sprintf("unknown Content-Transfer-Encoding %q", cte)}
		}
	}
	return src, true, nil
}

// raw reads a range of the message as IMAP sends it (bare LFs as CRLF), from skip on.
func (mf *msgFile) raw(r rng, skip int64) (io.Reader, error) {
	f, err := mf.open()
	if err != nil {
		return nil, err
	}
	if mf.crlf() {
		start := min(r.a.f+skip, r.b.f)
		return io.NewSectionReader(f, start, r.b.f-start), nil
	}
	cr := &crlfReader{r: bufio.NewReaderSize(io.NewSectionReader(f, r.a.f, r.b.f-r.a.f), copyBufSize)}
	if skip > 0 {
		n, err := io.CopyN(io.Discard, cr, skip)
		mf.cmd.work += n
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	return cr, nil
}

// size is the length of the section before any partial.
func (mf *msgFile) size(src source) (int64, error) {
	n := int64(len(src.suffix))
	if src.filter != nil {
		k, err := mf.filtered(src, io.Discard)
		if err != nil {
			return 0, err
		}
		n += k
	} else {
		n += src.hdr.len()
	}
	if src.hasBody {
		if src.decode {
			k, err := mf.decodedSize(src)
			if err != nil {
				return 0, err
			}
			n += k
		} else {
			n += src.body.len()
		}
	}
	return n, nil
}

// decodedSize is the length of the transfer-decoded body, computed once per entity.
func (mf *msgFile) decodedSize(src source) (int64, error) {
	if v := src.bodyOf.binSize.Load(); v > 0 {
		return v - 1, nil
	}
	r, err := mf.decoded(src)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(io.Discard, r, mf.cmd.buf)
	mf.cmd.work += src.body.len()
	if err != nil {
		return 0, err
	}
	src.bodyOf.binSize.Store(n + 1)
	return n, nil
}

func (mf *msgFile) decoded(src source) (io.Reader, error) {
	r, err := mf.raw(src.body, 0)
	if err != nil {
		return nil, err
	}
	var h gomessage.Header
	h.Set("Content-Transfer-Encoding", src.cte)
	e, err := gomessage.New(h, r)
	if err != nil {
		return nil, err
	}
	return e.Body, nil
}

// filtered writes the fields of the header src.hdr that src.filter keeps, each with a
// CRLF line end, to w and returns their length.
func (mf *msgFile) filtered(src source, w io.Writer) (int64, error) {
	r, err := mf.raw(src.hdr, 0)
	if err != nil {
		return 0, err
	}
	mf.cmd.work += src.hdr.len()
	br := bufio.NewReaderSize(r, 4096)
	var n int64
	keep, lineStart := false, true
	for {
		frag, rerr := br.ReadSlice('\n')
		if len(frag) > 0 {
			if lineStart {
				switch {
				case frag[0] == ' ' || frag[0] == '\t':
					// a continuation line: part of the field before it
				case bytes.Equal(frag, []byte("\r\n")):
					keep = false // the empty line that ends the header
				default:
					keep = src.filter.keeps(frag)
				}
			}
			if keep {
				k, err := w.Write(frag)
				n += int64(k)
				if err != nil {
					return n, err
				}
			}
			lineStart = frag[len(frag)-1] == '\n'
		}
		if rerr == nil || errors.Is(rerr, bufio.ErrBufferFull) {
			continue
		}
		if !errors.Is(rerr, io.EOF) {
			return n, rerr
		}
		if keep && !lineStart { // the header's last line had no line end
			k, err := io.WriteString(w, "\r\n")
			n += int64(k)
			if err != nil {
				return n, err
			}
		}
		return n, nil
	}
}

// window passes on the bytes of a partial section: skip first, then at most left.
type window struct {
	w          io.Writer
	skip, left int64
}

func (wn *window) Write(b []byte) (int, error) {
	n := len(b)
	if wn.skip > 0 {
		d := min(wn.skip, int64(len(b)))
		b, wn.skip = b[d:], wn.skip-d
	}
	if int64(len(b)) > wn.left {
		b = b[:wn.left]
	}
	if len(b) > 0 {
		k, err := wn.w.Write(b)
		wn.left -= int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (wn *window) full() bool { return wn.left <= 0 }

// copyTo copies r into wn until r ends or wn is full.
func (mf *msgFile) copyTo(wn *window, r io.Reader) error {
	for !wn.full() {
		n, err := r.Read(mf.cmd.buf[:min(int64(len(mf.cmd.buf)), wn.left+wn.skip)])
		if n > 0 {
			if _, werr := wn.Write(mf.cmd.buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// write writes bytes [off, off+n) of the section to w.
func (mf *msgFile) write(w io.Writer, src source, off, n int64) error {
	wn := &window{w: w, skip: off, left: n}
	// The header.
	switch {
	case src.filter != nil:
		if _, err := mf.filtered(src, wn); err != nil {
			return err
		}
	case src.hdr.len() > 0:
		if wn.skip >= src.hdr.len() {
			wn.skip -= src.hdr.len()
		} else {
			r, err := mf.raw(src.hdr, wn.skip)
			if err != nil {
				return err
			}
			wn.skip = 0
			if err := mf.copyTo(wn, r); err != nil {
				return err
			}
		}
	}
	if _, err := io.WriteString(wn, src.suffix); err != nil {
		return err
	}
	if !src.hasBody || wn.full() {
		return nil
	}
	// The body.
	if src.decode {
		r, err := mf.decoded(src)
		if err != nil {
			return err
		}
		before := wn.skip
		err = mf.copyTo(wn, r)
		mf.cmd.work += before
		return err
	}
	if wn.skip >= src.body.len() {
		wn.skip -= src.body.len()
		return nil
	}
	r, err := mf.raw(src.body, wn.skip)
	if err != nil {
		return err
	}
	wn.skip = 0
	return mf.copyTo(wn, r)
}

// crlfReader turns bare LF line ends into CRLF (RFC 3501 §2.3.4) for files other programs
// wrote; it starts at a line start.
type crlfReader struct {
	r       *bufio.Reader
	prevCR  bool
	pending bool // an LF is owed after the CR just returned
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.pending {
			p[n] = '\n'
			n++
			c.pending, c.prevCR = false, false
			continue
		}
		b, err := c.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if b == '\n' && !c.prevCR {
			p[n] = '\r'
			n++
			c.pending = true
			continue
		}
		p[n] = b
		n++
		c.prevCR = b == '\r'
	}
	return n, nil
}
