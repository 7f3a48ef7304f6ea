package bayes

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// This file holds a small, allocation-light MIME walker over the raw message bytes. The
// scorer only needs the header fields, the decoded text of text parts and the names and
// types of the other parts, so it does not build an entity tree (go-message would, at
// several times the cost per message); charsets are converted with go-message/charset.

// field is one header field; name and value alias the message bytes. The value keeps
// its folding (CRLF/LF followed by white space), which the tokenizers treat as space.
type field struct {
	name, value []byte
}

// splitHeader parses the header block at the start of b (RFC 5322 §2.2) and returns its
// fields (appended to dst) and the body after the blank line. Lines that are not
// fields (no colon, or a space before the colon) are skipped, as a lenient MTA would.
func splitHeader(dst []field, b []byte, maxFields int) ([]field, []byte) {
	i := 0
	for i < len(b) {
		// blank line: end of header
		if b[i] == '\n' {
			return dst, b[i+1:]
		}
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			return dst, b[i+2:]
		}
		// find the end of this field, including continuation lines
		start := i
		end := len(b)
		for j := i; j < len(b); {
			nl := bytes.IndexByte(b[j:], '\n')
			if nl < 0 {
				end = len(b)
				break
			}
			j += nl + 1
			if j < len(b) && (b[j] == ' ' || b[j] == '\t') {
				continue
			}
			end = j
			break
		}
		i = end
		line := b[start:end]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || len(dst) >= maxFields {
			continue
		}
		name := line[:colon]
		if hasSpace(name) {
			continue
		}
		dst = append(dst, field{name: name, value: trimSpace(line[colon+1:])})
	}
	return dst, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func hasSpace(b []byte) bool {
	for _, c := range b {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return true
		}
	}
	return false
}

func isSpace(c byte) bool { return classTable[c]&clSpace != 0 }

// headerValue returns the value of the first field named name (ASCII case-insensitive).
func headerValue(fields []field, name string) []byte {
	for _, f := range fields {
		if len(f.name) == len(name) && strings.EqualFold(string(f.name), name) {
			return f.value
		}
	}
	return nil
}

// unfold replaces folding and other control white space with single spaces.
func unfold(v []byte) string {
	if !bytes.ContainsAny(v, "\r\n\t") {
		return string(v)
	}
	b := make([]byte, 0, len(v))
	for _, c := range v {
		if c == '\r' || c == '\n' || c == '\t' {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}

// mimeParams are the Content-Type and Content-Disposition parameters the tokenizer
// uses; they alias the header bytes.
type mimeParams struct {
	boundary, charset, name, filename []byte
}

// mediaType parses a Content-Type or Content-Disposition value (RFC 2045 §5.1,
// RFC 2183) leniently, without allocating: the type is lower-cased into buf, the first
// of duplicate parameters wins, and a value that fails to parse still yields what can
// be read, since spam often carries broken headers. Values with RFC 2231 encodings or
// quoted-pair escapes go through mime.ParseMediaType.
func mediaType(v []byte, buf *[64]byte) (typ []byte, p mimeParams) {
	if bytes.ContainsAny(v, "*\\") {
		return mediaTypeSlow(v, buf)
	}
	semi := bytes.IndexByte(v, ';')
	if semi < 0 {
		semi = len(v)
	}
	t := trimSpace(v[:semi])
	if len(t) > len(buf) {
		t = t[:len(buf)]
	}
	typ = lowerInto(buf[:0], t)
	rest := v[semi:]
	for len(rest) > 0 {
		for len(rest) > 0 && (rest[0] == ';' || isSpace(rest[0])) {
			rest = rest[1:]
		}
		eq := bytes.IndexAny(rest, "=;")
		if eq < 0 {
			break
		}
		if rest[eq] == ';' {
			rest = rest[eq:]
			continue
		}
		key := trimSpace(rest[:eq])
		rest = rest[eq+1:]
		for len(rest) > 0 && isSpace(rest[0]) {
			rest = rest[1:]
		}
		var val []byte
		if len(rest) > 0 && (rest[0] == '"' || rest[0] == '\'') {
			q := rest[0]
			e := bytes.IndexByte(rest[1:], q)
			if e < 0 {
				val, rest = rest[1:], nil
			} else {
				val, rest = rest[1:1+e], rest[1+e+1:]
			}
		} else {
			e := 0
			for e < len(rest) && rest[e] != ';' && !isSpace(rest[e]) {
				e++
			}
			val, rest = rest[:e], rest[e:]
		}
		switch {
		case bytes.EqualFold(key, []byte("boundary")):
			if p.boundary == nil {
				p.boundary = val
			}
		case bytes.EqualFold(key, []byte("charset")):
			if p.charset == nil {
				p.charset = trimSpace(val)
			}
		case bytes.EqualFold(key, []byte("name")):
			if p.name == nil {
				p.name = val
			}
		case bytes.EqualFold(key, []byte("filename")):
			if p.filename == nil {
				p.filename = val
			}
		}
	}
	return typ, p
}

func mediaTypeSlow(v []byte, buf *[64]byte) (typ []byte, p mimeParams) {
	s := unfold(v)
	t, params, err := mime.ParseMediaType(s)
	if err != nil {
		// keep what the lenient parser finds without the escapes
		return mediaType(bytes.Map(func(r rune) rune {
			if r == '*' || r == '\\' {
				return -1
			}
			return r
		}, v), buf)
	}
	if len(t) > len(buf) {
		t = t[:len(buf)]
	}
	typ = append(buf[:0], t...)
	get := func(k string) []byte {
		if v, ok := params[k]; ok {
			return []byte(v)
		}
		return nil
	}
	return typ, mimeParams{boundary: get("boundary"), charset: get("charset"), name: get("name"), filename: get("filename")}
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7) leniently into dst: invalid escapes
// are kept literally, soft line breaks are removed.
func decodeQP(dst, src []byte) []byte {
	for len(src) > 0 {
		k := bytes.IndexByte(src, '=')
		if k < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:k]...)
		src = src[k:] // src[0] == '='
		switch {
		case len(src) > 1 && src[1] == '\n':
			src = src[2:]
			continue
		case len(src) > 2 && src[1] == '\r' && src[2] == '\n':
			src = src[3:]
			continue
		case len(src) > 2:
			h, ok1 := unhex(src[1])
			l, ok2 := unhex(src[2])
			if ok1 && ok2 {
				dst = append(dst, h<<4|l)
				src = src[3:]
				continue
			}
		}
		dst = append(dst, '=')
		src = src[1:]
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeBase64 decodes base64 (RFC 2045 §6.8) leniently into dst, skipping characters
// outside the alphabet and stopping at the first error.
func decodeBase64(dst, src []byte) []byte {
	// compact the alphabet characters first, then decode in one call
	start := len(dst)
	for _, c := range src {
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '+' || c == '/' {
			dst = append(dst, c)
		}
	}
	enc := dst[start:]
	n := len(enc) / 4 * 4
	out := make([]byte, base64.RawStdEncoding.DecodedLen(n))
	m, _ := base64.RawStdEncoding.Decode(out, enc[:n])
	dst = append(dst[:start], out[:m]...)
	return dst
}

// toUTF8 converts text in the named charset to UTF-8. Text that is pure ASCII, or
// declared as UTF-8/ASCII, is returned as is; ISO-8859-1 and windows-1252 are converted
// here; other charsets through go-message/charset; an unknown charset leaves the bytes
// unchanged (the tokens are then still consistent between messages). The second result
// is the scratch buffer to keep for the next call.
func toUTF8(text []byte, cs []byte, scratch []byte) ([]byte, []byte) {
	// the label first: most text is declared UTF-8 or ASCII and needs no scan
	if len(cs) == 0 || eqAny(cs, "utf-8", "utf8", "us-ascii", "ascii") || isASCII(text) {
		return text, scratch
	}
	switch {
	case eqAny(cs, "iso-8859-1", "iso8859-1", "latin1", "windows-1252", "cp1252"):
		// the most common legacy charsets, converted without a transform reader,
		// exactly as go-message/charset does
		win := bytes.HasSuffix(cs, []byte("1252"))
		out := scratch[:0]
		for _, c := range text {
			switch {
			case c < 0x80:
				out = append(out, c)
			case c < 0xa0 && win:
				out = utf8.AppendRune(out, cp1252[c-0x80])
			default:
				out = utf8.AppendRune(out, rune(c))
			}
		}
		return out, out[:0]
	}
	r, err := charset.Reader(string(cs), bytes.NewReader(text))
	if err != nil {
		return text, scratch
	}
	buf := bytes.NewBuffer(scratch[:0])
	if _, err := io.Copy(buf, io.LimitReader(r, int64(4*len(text)+64))); err != nil {
		return text, scratch
	}
	return buf.Bytes(), buf.Bytes()[:0]
}

func eqAny(b []byte, names ...string) bool {
	for _, n := range names {
		if len(b) == len(n) && strings.EqualFold(string(b), n) {
			return true
		}
	}
	return false
}

func isASCII(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// splitMultipart returns the body parts of a multipart body with the given boundary
// (RFC 2046 §5.1.1). Text before the first and after the closing delimiter is ignored.
// A missing closing delimiter ends the last part at the end of the body.
func splitMultipart(dst [][]byte, body []byte, boundary []byte, maxParts int) [][]byte {
	if len(boundary) == 0 || len(boundary) > 200 {
		return dst
	}
	var db [202]byte
	delim := append(append(db[:0], '-', '-'), boundary...)
	var start = -1
	i := 0
	for i <= len(body) {
		// the delimiter must be at the start of a line
		j := indexLineStart(body[i:], delim)
		if j < 0 {
			break
		}
		pos := i + j
		if start >= 0 {
			end := pos
			// the CRLF before the delimiter belongs to it
			if end > start && body[end-1] == '\n' {
				end--
				if end > start && body[end-1] == '\r' {
					end--
				}
			}
			dst = append(dst, body[start:end])
			if len(dst) >= maxParts {
				return dst
			}
		}
		after := pos + len(delim)
		if after+1 < len(body)+1 && bytes.HasPrefix(body[after:], []byte("--")) {
			return dst // closing delimiter
		}
		nl := bytes.IndexByte(body[after:], '\n')
		if nl < 0 {
			return dst
		}
		start = after + nl + 1
		i = start
	}
	if start >= 0 && start <= len(body) {
		dst = append(dst, body[start:])
	}
	return dst
}

// indexLineStart finds delim at the start of a line in b.
func indexLineStart(b []byte, delim []byte) int {
	off := 0
	for {
		k := bytes.Index(b[off:], delim)
		if k < 0 {
			return -1
		}
		p := off + k
		if p == 0 || b[p-1] == '\n' {
			return p
		}
		off = p + 1
	}
}

// cp1252 maps windows-1252's 0x80–0x9F to Unicode (unassigned bytes to U+FFFD).
var cp1252 = [32]rune{
	'€', '\ufffd', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\ufffd', 'Ž', '\ufffd',
	'\ufffd', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\ufffd', 'ž', 'Ÿ',
}
