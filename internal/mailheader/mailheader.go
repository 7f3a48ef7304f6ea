// Package mailheader is the one reader of message header blocks in portcullis: the rule
// engine's policy.ParseHeader, the MIME walk of content, dkim and the DSNs and loop check
// of delivery all split a header with Parse (and read one from a stream with ReadBlock),
// so they agree on where the header ends and which lines are fields.
//
// Parse is lenient the way mail readers are: a line inside the header block that is
// neither a field nor the continuation of one is skipped, not taken as the end of the
// header. A strict parser would stop there, so one junk line at the top would hide From:,
// Content-Type and forged Authentication-Results from every check while the recipient's
// mail reader still shows them. A continuation line after a skipped line is skipped with
// it (it continues nothing that is kept), as Thunderbird's parser does.
//
// The header ends at the first empty line: one that is just LF or CRLF. A line holding
// only a CR is no empty line (it is skipped as junk), as in net/textproto and go-message.
//
// Fields keep their raw bytes (folding and line endings as written), which is what a
// caller that writes the header back or canonicalizes it needs; Value unfolds.
package mailheader

import (
	"bytes"
	"errors"
	"io"
	"iter"
	"strings"
)

// Field is one header field as it stands in the message.
type Field struct {
	// Raw runs from the first byte of the name through the line ending of the field's
	// last line, folding and line endings (CRLF or LF) as written. A field whose first
	// line was cut by the limit ends at the cut, without a line ending. Raw aliases the
	// parsed bytes.
	Raw []byte
	// Name is the field name as written, without the white space some mailers put
	// before the colon. It aliases Raw.
	Name []byte

	colon int // offset of the colon in Raw
}

// Body returns the raw field body: the bytes after the colon, folding and line endings
// kept.
func (f Field) Body() []byte { return f.Raw[f.colon+1:] }

// Is reports whether the field is named name, ignoring ASCII case.
func (f Field) Is(name string) bool {
	return len(f.Name) == len(name) && strings.EqualFold(string(f.Name), name)
}

// Value returns the field body unfolded (RFC 5322 §2.2.3: each line break removed, the
// white space after it kept) and with leading and trailing white space trimmed.
func (f Field) Value() string {
	b := f.Body()
	if i := bytes.IndexByte(b, '\n'); i < 0 || i == len(b)-1 {
		return strings.TrimSpace(string(lineContent(b)))
	}
	out := make([]byte, 0, len(b))
	for line := range Lines(b) {
		out = append(out, line...)
	}
	return strings.TrimSpace(string(out))
}

// Lines yields the lines of b without their line endings (an LF and one CR before it).
func Lines(b []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line = b[:i+1]
			}
			b = b[len(line):]
			if !yield(lineContent(line)) {
				return
			}
		}
	}
}

// Header is a header block split into fields.
type Header struct {
	// Fields are the fields kept, in order.
	Fields []Field
	// End is the offset of the body in the parsed bytes: just past the empty line that
	// ends the header, or their length when there is none.
	End int
	// Junk reports skipped lines: lines that are neither a field nor a continuation of
	// one, and continuation lines that continue nothing.
	Junk bool
	// MboxFrom reports that the first line was an mbox "From " separator, skipped.
	MboxFrom bool
	// Long reports that the limit dropped fields or cut one.
	Long bool
}

// Parse splits the header block at the start of b into fields, appending them to dst
// (which may be nil) and returning them in Header.Fields. b may use CRLF or LF line
// endings.
//
// limit, when above zero, bounds what is kept: a field that starts at offset limit or
// later is dropped, and a kept field keeps its lines only while they fit in limit bytes
// (counted without line endings, one byte for each line break); a first line longer than
// that is cut at limit bytes, or dropped when its name does not fit. Header.Long reports
// either.
func Parse(dst []Field, b []byte, limit int) Header {
	h := Header{Fields: dst, End: len(b)}
	inField := false // the last line read belongs to a field, kept or not
	grow := false    // the last field kept may still take continuation lines
	logical := 0     // that field's length, counted as limit counts
	start := 0       // its offset in b
	for pos := 0; pos < len(b); {
		next := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		line := lineContent(b[pos:next])
		switch {
		case len(line) == 0:
			h.End = next
			return h
		case line[0] == ' ' || line[0] == '\t':
			if !inField {
				h.Junk = true
			} else if grow {
				if limit > 0 && logical+1+len(line) > limit {
					grow = false
					h.Long = true
				} else {
					logical += 1 + len(line)
					f := &h.Fields[len(h.Fields)-1]
					f.Raw = b[start:next]
				}
			}
		default:
			colon := bytes.IndexByte(line, ':')
			name := trimWSP(line[:max(colon, 0)])
			if colon <= 0 || !validName(name) {
				if pos == 0 && bytes.HasPrefix(line, []byte("From ")) {
					h.MboxFrom = true
				} else {
					h.Junk = true
				}
				inField, grow = false, false
				break
			}
			inField, grow = true, false
			end := next
			if limit > 0 {
				if pos >= limit || (len(line) > limit && colon >= limit) {
					h.Long = true
					break
				}
				if len(line) > limit {
					h.Long = true
					end = pos + limit
				} else {
					grow = true
				}
			} else {
				grow = true
			}
			start, logical = pos, len(line)
			h.Fields = append(h.Fields, Field{Raw: b[pos:end], Name: b[pos : pos+len(name)], colon: colon})
		}
		pos = next
	}
	return h
}

// lineContent returns a line without its LF and one CR before it; a line cut without
// a line ending loses a last CR.
func lineContent(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

func trimWSP(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validName checks RFC 5322 §3.6.8 ftext: printable US-ASCII except ":" (which cannot
// occur: the name ends at the first colon).
func validName(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	for _, c := range n {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// ErrTooLong is returned by ReadBlock for a header block longer than its limit.
var ErrTooLong = errors.New("mailheader: header block over the limit")

// ReadBlock reads the header block at the start of r and returns it without the empty
// line that ends it (all of r when there is none). It reads r in chunks and may read
// past the block. A block longer than limit bytes gives its first limit bytes and
// ErrTooLong; a read error gives what was read and the error.
func ReadBlock(r io.Reader, limit int) ([]byte, error) {
	// Two bytes more than the limit: the empty line after a block of limit bytes.
	lr := io.LimitReader(r, int64(limit)+2)
	buf := make([]byte, 0, min(limit+2, 4096))
	line, scan := 0, 0 // the offset of the line being read, and how far it was searched
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		for {
			i := bytes.IndexByte(buf[scan:], '\n')
			if i < 0 {
				scan = len(buf)
				break
			}
			scan += i + 1
			if len(lineContent(buf[line:scan])) == 0 {
				return cut(buf, line, limit)
			}
			line = scan
		}
		switch {
		case err == io.EOF && len(lineContent(buf[line:])) == 0: // a last line of "" or "\r"
			return cut(buf, line, limit)
		case err == io.EOF:
			return cut(buf, len(buf), limit)
		case err != nil:
			b, _ := cut(buf, len(buf), limit)
			return b, err
		}
	}
}

func cut(buf []byte, n, limit int) ([]byte, error) {
	if n > limit {
		return buf[:limit], ErrTooLong
	}
	return buf[:n], nil
}

// CRLF returns b with every line ended by CRLF: b itself when that is so already,
// otherwise a copy in which each LF, with one CR before it, became CRLF and a last line
// without a line ending got one.
func CRLF(b []byte) []byte {
	if isCRLF(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/16+2)
	for line := range Lines(b) {
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out
}

func isCRLF(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if b[len(b)-1] != '\n' {
		return false
	}
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return true
		}
		if off+i == 0 || b[off+i-1] != '\r' {
			return false
		}
		off += i + 1
	}
}
