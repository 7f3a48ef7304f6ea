package content

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
)

// Message is the result of a walk.
type Message struct {
	// Raw is the message as read; the offsets of Parts whose InRaw is true index it.
	Raw []byte
	// Header is the top-level header.
	Header Header
	// Parts lists every entity depth-first, the top-level entity first.
	Parts []*Part
	// Attachments lists the attachments and, after each archive, its entries (InArchive
	// set), depth-first.
	Attachments []*Attachment
	// Text is the body text (text/plain parts, and text/html parts reduced to text),
	// decoded to UTF-8, at most Limits.MaxTextSize.
	Text string
	// TextBytes counts the text produced before the MaxTextSize cut.
	TextBytes int
	// URLs are the distinct http, https and ftp URLs (and bare www. names) found in the
	// text and in HTML href/src/action attributes, in order of appearance. URLHosts are
	// their distinct host names, lower case. The RHSBL URL check reads these.
	URLs     []string
	URLHosts []string
	// Malformed is set when the MIME structure or encoding was broken somewhere.
	Malformed bool
	// Truncated is set when a limit left content unexamined: a part not walked, a header
	// not read to its end, an archive not listed or not opened. What the walk did not
	// see may hold anything, so such a message is unknown, never clean.
	Truncated bool
	// LimitsHit names each limit the walk reached, by its configuration key
	// (LimitParts, ...), in the order they were first reached. Every one but
	// max_text_size and max_urls sets Truncated.
	LimitsHit []string
	// Errors lists what was wrong, as "path: code" (at most 64 entries). Codes:
	// malformed_header, missing_boundary, boundary_not_found, missing_close_boundary,
	// duplicate_content_type, malformed_params, bad_base64, bad_quoted_printable,
	// unknown_encoding, unknown_charset, corrupt_archive, and the limit codes
	// too_many_parts, too_deep, header_too_long, decoded_limit, text_limit, url_limit,
	// archive_limit, zip_bomb.
	Errors []string
}

// HeaderKind says which Postfix table class a header belongs to.
type HeaderKind int

// Header kinds, as Postfix's cleanup classifies them.
const (
	HeaderPrimary HeaderKind = iota // the message's own header
	HeaderMIME                      // the header of a MIME body part
	HeaderNested                    // the header of an attached message/rfc822
)

// Part is one MIME entity.
type Part struct {
	// Path is the entity's position: "" for the top level, "1", "2.1", ...; an attached
	// message's entity is the child of its message/rfc822 part.
	Path   string
	Depth  int
	Kind   HeaderKind
	Header Header
	// MediaType is the lower-case type/subtype (text/plain when absent or unparsable).
	MediaType   string
	Params      []Param
	Disposition string
	Encoding    string // lower-case Content-Transfer-Encoding
	// InRaw reports whether Start, BodyStart and End index Message.Raw; the entities of
	// an attached message that had to be transfer-decoded index Buf instead.
	InRaw                 bool
	Buf                   []byte
	Start, BodyStart, End int
	Multipart             bool
	// Decoded is the transfer-decoded body of a leaf part.
	Decoded []byte
}

// Param is a Content-Type parameter.
type Param struct{ Name, Value string }

// Bytes returns the entity's raw bytes, header and body.
func (p *Part) Bytes() []byte { return p.Buf[p.Start:p.End] }

// Body returns the entity's raw (still transfer-encoded) body.
func (p *Part) Body() []byte { return p.Buf[p.BodyStart:p.End] }

// Header is a list of header fields in order.
type Header []Field

// Field is one header field.
type Field struct {
	Name string // as written
	// Logical is the whole field as Postfix's header_checks see it: "Name: value", with
	// "\n" between the physical lines of a folded field and no CR.
	Logical string
	// Value is the unfolded value (RFC 5322 §2.2.3), leading white space trimmed.
	Value string
}

// Get returns the value of the first field named name (case-insensitive), or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns the values of every field named name.
func (h Header) Values(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// Walk reads a message from r (at most lim.MaxSize) and walks it.
func Walk(r io.Reader, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	raw, err := io.ReadAll(io.LimitReader(r, int64(lim.MaxSize)+1))
	if err != nil {
		return nil, fmt.Errorf("content: reading message: %w", err)
	}
	return WalkBytes(raw, lim)
}

// WalkBytes walks a message held in memory; the Message keeps raw. The only error is a
// message longer than lim.MaxSize: malformed content is reported in the Message.
func WalkBytes(raw []byte, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	if int64(len(raw)) > int64(lim.MaxSize) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d bytes", ErrTooLarge, len(raw), lim.MaxSize)
	}
	w := &walker{lim: lim, msg: &Message{Raw: raw}}
	w.entity(raw, 0, len(raw), 0, "", true, HeaderPrimary, "text/plain")
	if len(w.msg.Parts) > 0 {
		w.msg.Header = w.msg.Parts[0].Header
	}
	w.msg.Text = string(w.text)
	return w.msg, nil
}

type walker struct {
	lim            Limits
	msg            *Message
	decoded        int64
	archiveEntries int
	uncompressed   int64
	text           []byte
	urlSet         map[string]struct{}
	hostSet        map[string]struct{}
	fields         []mailheader.Field // parseHeader's scratch
}

// malformed records a structural problem.
func (w *walker) malformed(path, code string) {
	w.msg.Malformed = true
	w.note(path, code)
}

// limit records that the limit named by its key was reached at path.
func (w *walker) limit(path, key string) {
	if truncates(key) {
		w.msg.Truncated = true
	}
	if !containsString(w.msg.LimitsHit, key) {
		w.msg.LimitsHit = append(w.msg.LimitsHit, key)
	}
	w.note(path, limitCodes[key])
}

func (w *walker) note(path, code string) {
	if len(w.msg.Errors) >= 64 {
		return
	}
	if path == "" {
		path = "0"
	}
	e := path + ": " + code
	for _, x := range w.msg.Errors {
		if x == e {
			return
		}
	}
	w.msg.Errors = append(w.msg.Errors, e)
}

func childPath(parent string, i int) string {
	if parent == "" {
		return strconv.Itoa(i)
	}
	return parent + "." + strconv.Itoa(i)
}

// entity walks the entity in buf[start:end].
func (w *walker) entity(buf []byte, start, end, depth int, path string, inRaw bool, kind HeaderKind, defaultType string) {
	if len(w.msg.Parts) >= w.lim.MaxParts {
		w.limit(path, LimitParts)
		return
	}
	p := &Part{Path: path, Depth: depth, Kind: kind, InRaw: inRaw, Buf: buf, Start: start, End: end}
	w.msg.Parts = append(w.msg.Parts, p)
	hdr, bodyOff, bad, long, fields := parseHeader(buf[start:end], int(w.lim.MaxHeaderSize), w.fields)
	w.fields = fields
	p.Header = hdr
	p.BodyStart = start + bodyOff
	if bad {
		w.malformed(path, "malformed_header")
	}
	if long {
		w.limit(path, LimitHeaderSize)
	}

	ctVals := hdr.Values("Content-Type")
	mt, params, badParams := "", []param(nil), false
	if len(ctVals) > 0 {
		mt, params, badParams = parseParamField(ctVals[0])
		for _, v := range ctVals[1:] {
			if v != ctVals[0] {
				w.malformed(path, "duplicate_content_type")
			}
		}
	}
	if mt == "" || strings.IndexByte(mt, '/') <= 0 {
		if mt != "" {
			w.malformed(path, "malformed_content_type")
		}
		mt = defaultType
	}
	p.MediaType = mt
	for _, x := range params {
		p.Params = append(p.Params, Param{Name: x.name, Value: x.value})
	}
	if badParams {
		w.malformed(path, "malformed_params")
	}
	p.Encoding = strings.ToLower(strings.TrimSpace(stripComment(hdr.Get("Content-Transfer-Encoding"))))
	disp, dparams, badDisp := parseParamField(hdr.Get("Content-Disposition"))
	p.Disposition = disp
	if badDisp {
		w.malformed(path, "malformed_params")
	}

	switch {
	case strings.HasPrefix(mt, "multipart/"):
		boundary, dup := simpleParam(params, "boundary")
		if dup {
			w.malformed(path, "duplicate_boundary")
		}
		if boundary == "" {
			w.malformed(path, "missing_boundary")
			w.leaf(p, "text/plain", buf[p.BodyStart:end], params, dparams, badParams || badDisp)
			return
		}
		if depth >= w.lim.MaxDepth {
			w.limit(path, LimitDepth)
			return
		}
		if w.multipart(p, buf, boundary, depth, path, inRaw, mt == "multipart/digest") {
			return
		}
		w.malformed(path, "boundary_not_found")
		// Read the body the way a mail client shows it: as text.
		w.leaf(p, "text/plain", buf[p.BodyStart:end], params, dparams, badParams || badDisp)
		return
	case mt == "message/rfc822" || mt == "message/global":
		w.messageAttachment(p, params, dparams, badParams || badDisp)
		if depth >= w.lim.MaxDepth {
			w.limit(path, LimitDepth)
			return
		}
		if p.Encoding == "" || p.Encoding == "7bit" || p.Encoding == "8bit" || p.Encoding == "binary" {
			w.entity(buf, p.BodyStart, end, depth+1, childPath(path, 1), inRaw, HeaderNested, "text/plain")
			return
		}
		// RFC 2046 §5.2.1 forbids encoding message/rfc822, but mailers do it: decode
		// and walk the decoded copy.
		dec := w.decode(p, buf[p.BodyStart:end])
		w.entity(dec, 0, len(dec), depth+1, childPath(path, 1), false, HeaderNested, "text/plain")
		return
	}
	w.leaf(p, mt, buf[p.BodyStart:end], params, dparams, badParams || badDisp)
}

// multipart splits a multipart body on its boundary (RFC 2046 §5.1.1) and walks each body
// part. It returns false when no delimiter line was found at all.
func (w *walker) multipart(p *Part, buf []byte, boundary string, depth int, path string, inRaw bool, digest bool) bool {
	p.Multipart = true
	dash := []byte("--" + boundary)
	body := buf[p.BodyStart:p.End]
	base := p.BodyStart
	childType := "text/plain"
	if digest {
		childType = "message/rfc822" // RFC 2046 §5.1.5
	}
	partStart := -1 // offset in body of the current part's first byte
	n := 0
	pos := 0
	closed := false
	for pos <= len(body) {
		i := bytes.Index(body[pos:], dash)
		if i < 0 {
			break
		}
		i += pos
		lineEnd := bytes.IndexByte(body[i:], '\n')
		if lineEnd < 0 {
			lineEnd = len(body)
		} else {
			lineEnd += i
		}
		if i > 0 && body[i-1] != '\n' {
			pos = i + len(dash)
			continue
		}
		rest := bytes.TrimRight(body[i+len(dash):lineEnd], " \t\r")
		isClose := bytes.Equal(rest, []byte("--"))
		if len(rest) != 0 && !isClose {
			pos = i + len(dash) // a longer boundary that starts like ours
			continue
		}
		if partStart >= 0 {
			// The CRLF before the delimiter belongs to the delimiter.
			e := i
			if e > partStart && body[e-1] == '\n' {
				e--
				if e > partStart && body[e-1] == '\r' {
					e--
				}
			}
			n++
			w.entity(buf, base+partStart, base+e, depth+1, childPath(path, n), inRaw, HeaderMIME, childType)
		}
		next := lineEnd + 1
		if next > len(body) {
			next = len(body)
		}
		if isClose {
			closed = true
			break
		}
		partStart = next
		pos = next
		if len(w.msg.Parts) >= w.lim.MaxParts {
			w.limit(path, LimitParts)
			return true
		}
	}
	if partStart < 0 {
		return false
	}
	if !closed {
		w.malformed(path, "missing_close_boundary")
		n++
		w.entity(buf, base+partStart, base+len(body), depth+1, childPath(path, n), inRaw, HeaderMIME, childType)
	}
	return true
}

// parseHeader reads the header fields at the start of b (mailheader.Parse: lenient, a
// leading mbox "From " line skipped) into a Header. It returns the offset of the body
// (after the empty line), and whether the header was malformed (lines that are no field
// were skipped) or longer than max bytes (fields past max are not kept). scratch is
// space for the raw fields, returned for reuse.
func parseHeader(b []byte, max int, scratch []mailheader.Field) (h Header, bodyOff int, bad, long bool, _ []mailheader.Field) {
	mh := mailheader.Parse(scratch[:0], b, max)
	if len(mh.Fields) > 0 {
		h = make(Header, len(mh.Fields))
		buf := make([]byte, 0, 256)
		for i, f := range mh.Fields {
			h[i], buf = makeField(f, buf)
		}
	}
	return h, mh.End, mh.Junk, mh.Long, mh.Fields
}

// makeField turns a raw field into a Field with one allocation: Name and, for an
// unfolded field, Value are substrings of Logical. buf is scratch space.
func makeField(f mailheader.Field, buf []byte) (Field, []byte) {
	buf = buf[:0]
	folded := false
	for line := range mailheader.Lines(f.Raw) {
		if len(buf) > 0 {
			buf = append(buf, '\n')
			folded = true
		}
		buf = append(buf, line...)
	}
	logical := string(buf)
	out := Field{Logical: logical, Name: logical[:len(f.Name)]}
	v := logical[len(f.Raw)-len(f.Body()):] // after the colon
	if folded {
		v = strings.ReplaceAll(v, "\n", "")
	}
	out.Value = strings.TrimSpace(v)
	return out, buf
}

// decode transfer-decodes a body within the decoded-bytes budget.
func (w *walker) decode(p *Part, body []byte) []byte {
	budget := int64(w.lim.MaxDecodedSize) - w.decoded
	if budget <= 0 {
		w.limit(p.Path, LimitDecodedSize)
		return nil
	}
	var out []byte
	switch p.Encoding {
	case "", "7bit", "8bit", "binary":
		out = body
	case "base64":
		var bad bool
		out, bad = decodeBase64(body)
		if bad {
			w.malformed(p.Path, "bad_base64")
		}
	case "quoted-printable":
		var bad bool
		out, bad = decodeQP(body)
		if bad {
			w.malformed(p.Path, "bad_quoted_printable")
		}
	case "x-uuencode", "uuencode", "x-uue":
		// Decoded by addUU when the part is text; as a transfer encoding the "begin"
		// block is the whole body.
		if f := findUU(body, budget); len(f) > 0 {
			out = f[0].data
			if f[0].bad {
				w.malformed(p.Path, "bad_uuencode")
			}
		} else {
			w.malformed(p.Path, "bad_uuencode")
			out = body
		}
	default:
		w.malformed(p.Path, "unknown_encoding")
		out = body
	}
	if int64(len(out)) > budget {
		out = out[:budget]
		w.limit(p.Path, LimitDecodedSize)
	}
	w.decoded += int64(len(out))
	return out
}

var b64 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(a); i++ {
		t[a[i]] = byte(i)
	}
	t['-'], t['_'] = 62, 63 // base64url, which some mailers emit
	return t
}()

// decodeBase64 decodes leniently: white space is skipped, padding ends a quantum and
// decoding goes on after it (concatenated blocks), other bytes are skipped and reported.
func decodeBase64(in []byte) ([]byte, bool) {
	out := make([]byte, 0, len(in)*3/4)
	var q uint32
	n := 0
	bad := false
	for _, c := range in {
		v := b64[c]
		if v == 0xFF {
			switch c {
			case ' ', '\t', '\r', '\n':
			case '=':
				switch n {
				case 2:
					out = append(out, byte(q>>4))
				case 3:
					out = append(out, byte(q>>10), byte(q>>2))
				}
				q, n = 0, 0
			default:
				bad = true
			}
			continue
		}
		q = q<<6 | uint32(v)
		n++
		if n == 4 {
			out = append(out, byte(q>>16), byte(q>>8), byte(q))
			q, n = 0, 0
		}
	}
	switch n {
	case 1:
		bad = true
	case 2:
		out = append(out, byte(q>>4))
	case 3:
		out = append(out, byte(q>>10), byte(q>>2))
	}
	return out, bad
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7) leniently: a bad escape is kept as
// written and reported; soft line breaks and trailing white space are removed.
func decodeQP(in []byte) ([]byte, bool) {
	out := make([]byte, 0, len(in))
	bad := false
	for len(in) > 0 {
		nl := bytes.IndexByte(in, '\n')
		var line []byte
		hasNL := nl >= 0
		if hasNL {
			line, in = in[:nl], in[nl+1:]
		} else {
			line, in = in, nil
		}
		line = bytes.TrimRight(line, " \t\r")
		soft := false
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c != '=' {
				out = append(out, c)
				continue
			}
			if i == len(line)-1 {
				soft = true
				break
			}
			if i+2 < len(line) {
				if h, ok := unhex2(line[i+1], line[i+2]); ok {
					out = append(out, h)
					i += 2
					continue
				}
			}
			bad = true
			out = append(out, c)
		}
		if hasNL && !soft {
			out = append(out, '\n')
		}
	}
	return out, bad
}

// ReadHeader parses the header at the start of raw as the walker does (lenient, at most
// maxBytes of fields kept; 0 means the default) and returns it with the offset of the
// body.
func ReadHeader(raw []byte, maxBytes int) (Header, int) {
	if maxBytes <= 0 {
		maxBytes = int(DefaultLimits.MaxHeaderSize)
	}
	var scratch [32]mailheader.Field
	h, off, _, _, _ := parseHeader(raw, maxBytes, scratch[:0])
	return h, off
}
