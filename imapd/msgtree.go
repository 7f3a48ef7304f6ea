package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// The MIME structure of a message is parsed once, streaming, into a tree of byte offsets
// (as Dovecot's message parser does): every BODY[...] section is then a range of the file
// that FETCH copies with a seek, BODYSTRUCTURE and ENVELOPE come from the few header
// fields kept per entity, and nothing holds a message's bytes. The parse is bounded as
// Dovecot bounds it (max_nested_mime_parts 100, max_total_mime_parts 10000): below the
// limits the rest of an entity is its body.
const (
	maxPartDepth   = 100
	maxParts       = 10000
	maxKeptField   = 16 << 10 // bytes kept of one header field
	maxKeptHeaders = 1 << 20  // bytes of header fields kept per message
	parseBufSize   = 64 << 10
)

// pos is a place in a message: v is the offset in the message as IMAP sends it (every
// line end CRLF, RFC 3501 §2.3.4), f the offset in its file, n the number of LFs before it.
// Files other programs wrote with bare LF differ in v and f.
type pos struct{ v, f, n int64 }

// part is one MIME entity: its header is [hdr, body), its body [body, end).
type part struct {
	hdr, body, end pos
	// blank says the header ended with an empty line (inside [hdr, body)).
	blank bool
	// header holds the fields of keptField: what BODYSTRUCTURE, ENVELOPE and the
	// section paths look at.
	header    textproto.Header
	mediaType string // lower case; message/rfc822 for a multipart/digest child without one
	children  []*part
	msg       *part // the encapsulated message of message/rfc822 and message/global
	// binSize caches the transfer-decoded size of the body plus one (0: not known yet).
	binSize atomic.Int64
}

// msgTree is the parsed structure of one message file.
type msgTree struct {
	root *part
	full bool  // every entity was parsed; otherwise only the root's header
	crlf bool  // the file has no bare LF: v == f everywhere
	mem  int64 // what the tree holds in memory, roughly
}

// keptField reports whether a header field is kept in the tree: the MIME fields and the
// fields of an envelope (RFC 3501 §7.4.2).
func keptField(name []byte) bool {
	switch strings.ToLower(string(name)) {
	case "content-type", "content-transfer-encoding", "content-disposition", "content-language",
		"content-location", "content-id", "content-description",
		"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id":
		return true
	}
	return false
}

// treeParser reads a message file line by line, keeping positions.
type treeParser struct {
	r          *bufio.Reader
	cur        pos    // the start of the next line
	line       []byte // the line just read without its line end, at most maxKeptField bytes
	lineTrunc  bool   // line holds only the start of a longer line
	lineStart  pos
	lineEOL    int64 // the line end's length in the file: 0 (end of file), 1 (LF) or 2 (CRLF)
	prevEOL    int64 // the same of the line before
	eof        bool
	err        error // a read error other than EOF
	scanned    int64
	bareLF     bool
	headerOnly bool
	bounds     [][]byte // "--boundary" of the enclosing multiparts, outermost first
	pending    *boundaryLine
	parts      int
	kept       int64
	fieldBuf   []byte
}

// boundaryLine is a delimiter or close delimiter line (RFC 2046 §5.1.1) met by an entity
// inside the multipart it belongs to.
type boundaryLine struct {
	level int // index in bounds
	final bool
}

// parseTree parses the message in r (its file from the start). With headerOnly it stops
// after the root's header; the root's end is then endOfFile as the index knows it.
func parseTree(r io.Reader, headerOnly bool, endOfFile pos) (*msgTree, int64, error) {
	p := &treeParser{r: bufio.NewReaderSize(r, parseBufSize), headerOnly: headerOnly}
	root := p.entity(0, false)
	if p.err != nil {
		return nil, p.scanned, p.err
	}
	t := &msgTree{root: root, full: !headerOnly}
	if headerOnly {
		root.end = endOfFile
		t.crlf = endOfFile.v == endOfFile.f
	} else {
		t.crlf = !p.bareLF
	}
	t.mem = int64(p.parts)*256 + 2*p.kept
	return t, p.scanned, nil
}

// next reads one line; false at the end of the file.
func (p *treeParser) next() bool {
	if p.eof {
		return false
	}
	p.prevEOL = p.lineEOL
	p.lineStart = p.cur
	p.line = p.line[:0]
	p.lineTrunc = false
	var n int64
	var last, beforeLast byte
	for {
		frag, err := p.r.ReadSlice('\n')
		n += int64(len(frag))
		if room := maxKeptField - len(p.line); room > 0 {
			p.line = append(p.line, frag[:min(room, len(frag))]...)
		}
		if len(frag) >= 2 {
			beforeLast, last = frag[len(frag)-2], frag[len(frag)-1]
		} else if len(frag) == 1 {
			beforeLast, last = last, frag[0]
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		p.eof = true
		if !errors.Is(err, io.EOF) {
			p.err = err
		}
		if n == 0 {
			return false
		}
		break
	}
	p.scanned += n
	p.lineEOL = 0
	viewEOL := int64(0)
	if last == '\n' {
		viewEOL = 2
		p.lineEOL = 1
		if beforeLast == '\r' && n >= 2 {
			p.lineEOL = 2
		} else {
			p.bareLF = true
		}
	}
	content := n - p.lineEOL
	if int64(len(p.line)) > content {
		p.line = p.line[:content]
	} else if int64(len(p.line)) < content {
		p.lineTrunc = true
	}
	p.cur.f += n
	p.cur.v += content + viewEOL
	if last == '\n' {
		p.cur.n++
	}
	return true
}

// endBefore is where an entity that began at start ends when the current line is a
// boundary: before the line end that precedes the boundary line, which belongs to the
// delimiter (RFC 2046 §5.1.1), unless the boundary is the entity's first line.
func (p *treeParser) endBefore(start pos) pos {
	s := p.lineStart
	if s.v <= start.v || p.prevEOL == 0 {
		return s
	}
	return pos{v: s.v - 2, f: s.f - p.prevEOL, n: s.n - 1}
}

// eofEnd is where an entity that began at start ends at the end of the file. Inside a
// multipart the last line end is left out, as go-message's multipart reader (and so
// imapserver) leaves it out of a part that lacks its closing boundary.
func (p *treeParser) eofEnd(start pos, enclosed bool) pos {
	c := p.cur
	if !enclosed || p.lineEOL == 0 || c.v-2 < start.v {
		return c
	}
	return pos{v: c.v - 2, f: c.f - p.lineEOL, n: c.n - 1}
}

// matchBoundary reports whether the current line is a boundary of an enclosing multipart
// (the innermost that matches) and sets p.pending to it. It follows go-message's
// multipart reader, so that FETCH and the content checks see the same parts: a line
// "--boundary" followed by nothing, white space or "-" ends a part; unless it is a proper
// delimiter (RFC 2046 §5.1.1: "--boundary", transport padding) it is taken as the close
// delimiter, since the reader stops reading parts there. In a multipart's preamble
// (strict is its level) only proper delimiter lines count.
func (p *treeParser) matchBoundary(strict int) bool {
	l := p.line
	if len(p.bounds) == 0 || len(l) < 3 || l[0] != '-' || l[1] != '-' {
		return false
	}
	for i := len(p.bounds) - 1; i >= 0; i-- {
		b := p.bounds[i]
		if !bytes.HasPrefix(l, b) {
			continue
		}
		rest := l[len(b):]
		delim := !p.lineTrunc && len(bytes.Trim(rest, " \t")) == 0
		final := !p.lineTrunc && bytes.HasPrefix(rest, []byte("--")) && len(bytes.Trim(rest[2:], " \t")) == 0
		if !delim && !final {
			if i == strict || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '-') {
				continue
			}
			final = true // a broken boundary line: no more parts
		}
		p.pending = &boundaryLine{level: i, final: final}
		return true
	}
	return false
}

// entity parses one entity from the current position: its header, then its body up to a
// boundary of an enclosing multipart (left in p.pending) or the end of the file.
func (p *treeParser) entity(depth int, digestChild bool) *part {
	pt := &part{hdr: p.cur}
	p.parts++
	more := p.readHeader(pt)
	h := gomessage.Header{Header: pt.header}
	mt, params, _ := h.ContentType()
	mt = strings.ToLower(mt)
	if !pt.header.Has("Content-Type") && digestChild {
		mt = "message/rfc822" // RFC 2046 §5.1.5
	}
	pt.mediaType = mt
	if !more || p.headerOnly {
		return pt
	}
	nested := depth < maxPartDepth && p.parts < maxParts
	switch {
	case nested && strings.HasPrefix(mt, "multipart/") && params["boundary"] != "":
		level := len(p.bounds)
		p.bounds = append(p.bounds, []byte("--"+params["boundary"]))
		p.multipart(pt, level, depth, mt == "multipart/digest")
		p.bounds = p.bounds[:level]
	case nested && (mt == "message/rfc822" || mt == "message/global"):
		pt.msg = p.entity(depth+1, false)
		pt.end = pt.msg.end
	default:
		p.leaf(pt, pt.body)
	}
	return pt
}

// readHeader reads the header of pt; false when it ended at a boundary or the end of
// the file (the body is then empty).
func (p *treeParser) readHeader(pt *part) bool {
	p.fieldBuf = p.fieldBuf[:0]
	keeping := false
	defer func() {
		if len(p.fieldBuf) > 0 {
			p.fieldBuf = append(p.fieldBuf, '\r', '\n')
			pt.header, _ = textproto.ReadHeader(bufio.NewReader(bytes.NewReader(p.fieldBuf)))
		}
	}()
	for {
		if !p.next() {
			pt.body, pt.end = p.cur, p.cur
			return false
		}
		if p.matchBoundary(-1) {
			pt.body = p.endBefore(pt.hdr)
			pt.end = pt.body
			return false
		}
		if len(p.line) == 0 && !p.lineTrunc {
			pt.body, pt.end, pt.blank = p.cur, p.cur, true
			return true
		}
		if c := p.line[0]; c == ' ' || c == '\t' {
			if keeping {
				p.keep(p.line)
			}
			continue
		}
		keeping = false
		if i := bytes.IndexByte(p.line, ':'); i > 0 && keptField(bytes.TrimRight(p.line[:i], " \t")) {
			keeping = p.keep(p.line)
		}
	}
}

// keep adds a header line to the kept fields, within the bounds; false when it did not.
func (p *treeParser) keep(l []byte) bool {
	if p.kept+int64(len(l))+2 > maxKeptHeaders {
		return false
	}
	p.kept += int64(len(l)) + 2
	p.fieldBuf = append(p.fieldBuf, l...)
	p.fieldBuf = append(p.fieldBuf, '\r', '\n')
	return true
}

// leaf reads a body that is not parsed further up to a boundary or the end of the file.
func (p *treeParser) leaf(pt *part, start pos) {
	for p.next() {
		if p.matchBoundary(-1) {
			pt.end = p.endBefore(start)
			return
		}
	}
	pt.end = p.eofEnd(start, len(p.bounds) > 0)
}

// multipart reads the preamble, the body parts and the epilogue of pt, whose delimiter is
// p.bounds[level].
func (p *treeParser) multipart(pt *part, level, depth int, digest bool) {
	for {
		if !p.next() {
			pt.end = p.eofEnd(pt.body, level > 0)
			return
		}
		if !p.matchBoundary(level) {
			continue
		}
		b := p.pending
		if b.level < level {
			pt.end = p.endBefore(pt.body)
			return
		}
		p.pending = nil
		if b.final {
			break
		}
		// Body parts follow each other, each ended by the next boundary line.
		for {
			if p.parts >= maxParts {
				p.pending = nil
				p.bounds = p.bounds[:level] // the rest is this multipart's body
				p.leaf(pt, pt.body)
				return
			}
			child := p.entity(depth+1, digest)
			pt.children = append(pt.children, child)
			b := p.pending
			if b == nil { // the end of the file
				pt.end = p.eofEnd(pt.body, level > 0)
				return
			}
			if b.level < level {
				pt.end = child.end
				return
			}
			p.pending = nil
			if b.final {
				break
			}
		}
		break
	}
	// The epilogue, up to an enclosing boundary; this multipart's own boundary lines in
	// it are text.
	p.bounds = p.bounds[:level]
	p.leaf(pt, pt.body)
}

// resolve finds the entity a section part path names, as imapserver's
// ExtractBodySection does (RFC 3501 §6.4.5: part 1 of a non-multipart message is the
// message itself; a message/rfc822 part's parts are those of the message it holds).
// parent is the media type of the multipart the entity is a part of.
func (t *msgTree) resolve(path []int) (node *part, parent string, ok bool) {
	node = t.root
	if len(path) > 0 && !t.full {
		return nil, "", false
	}
	if len(path) > 0 && path[0] == 1 && !strings.HasPrefix(node.mediaType, "multipart/") {
		path = path[1:]
	}
	for _, n := range path {
		node = node.open()
		if !strings.HasPrefix(node.mediaType, "multipart/") {
			if n != 1 {
				return nil, "", false
			}
			continue
		}
		if n < 1 || n > len(node.children) {
			return nil, "", false
		}
		parent = node.mediaType
		node = node.children[n-1]
	}
	return node, parent, true
}

// open returns the message a message/rfc822 entity holds, or the entity itself.
func (pt *part) open() *part {
	if pt.msg != nil {
		return pt.msg
	}
	return pt
}

// bodyStructure is imapserver's ExtractBodyStructure over the tree: the same structure
// without reading a body into memory (sizes and line counts come from the offsets).
func (t *msgTree) bodyStructure() imap.BodyStructure { return t.root.bodyStructure() }

func (pt *part) bodyStructure() imap.BodyStructure {
	header := gomessage.Header{Header: pt.header}
	mediaType, typeParams, _ := header.ContentType()
	primaryType, subType, _ := strings.Cut(mediaType, "/")
	if primaryType == "multipart" {
		bs := &imap.BodyStructureMultiPart{Subtype: subType}
		for _, c := range pt.children {
			bs.Children = append(bs.Children, c.bodyStructure())
		}
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      typeParams,
			Disposition: contentDisposition(header),
			Language:    contentLanguage(header),
			Location:    header.Get("Content-Location"),
		}
		return bs
	}
	lines := pt.end.n - pt.body.n
	bs := &imap.BodyStructureSinglePart{
		Type:        primaryType,
		Subtype:     subType,
		Params:      typeParams,
		ID:          header.Get("Content-Id"),
		Description: header.Get("Content-Description"),
		Encoding:    header.Get("Content-Transfer-Encoding"),
		Size:        uint32(pt.end.v - pt.body.v),
	}
	if mediaType == "message/rfc822" || mediaType == "message/global" {
		inner := pt.msg
		if inner == nil { // beyond the parse limits: an empty message
			inner = &part{hdr: pt.body, body: pt.body, end: pt.body}
		}
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      extractEnvelope(inner.header).imap(),
			BodyStructure: inner.bodyStructure(),
			NumLines:      lines,
		}
	}
	if primaryType == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: lines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: contentDisposition(header),
		Language:    contentLanguage(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

func contentDisposition(header gomessage.Header) *imap.BodyStructureDisposition {
	disp, dispParams, _ := header.ContentDisposition()
	if disp == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: dispParams}
}

func contentLanguage(header gomessage.Header) []string {
	v := header.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i, lang := range l {
		l[i] = strings.TrimSpace(lang)
	}
	return l
}
