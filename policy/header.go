package policy

import (
	"bufio"
	"bytes"

	"github.com/emersion/go-message/textproto"
)

// ParseHeader reads the header block of a raw message (CRLF or LF line endings) as a
// mail reader would: up to the first empty line, skipping lines that are neither a header
// field nor a continuation. Strict parsers stop at such a line, which would let one junk
// line at the top hide From:, Content-Type and forged Authentication-Results from every
// check while the recipient's mail reader still shows them. end is the offset of the body
// (just past the empty line, or len(raw) when there is none); malformed reports skipped
// lines.
func ParseHeader(raw []byte) (h textproto.Header, end int, malformed bool) {
	var clean bytes.Buffer
	pos, started := 0, false
	end = len(raw)
	for pos < len(raw) {
		nl := bytes.IndexByte(raw[pos:], '\n')
		next := len(raw)
		if nl >= 0 {
			next = pos + nl + 1
		}
		line := bytes.TrimRight(raw[pos:next], "\r\n")
		switch {
		case len(line) == 0:
			if nl >= 0 { // the empty line that ends the header
				end = next
			}
			pos = len(raw)
			continue
		case line[0] == ' ' || line[0] == '\t':
			if !started {
				malformed = true
				pos = next
				continue
			}
		case !isField(line):
			malformed = true
			pos = next
			continue
		default:
			started = true
		}
		clean.Write(line)
		clean.WriteString("\r\n")
		pos = next
	}
	clean.WriteString("\r\n")
	h, err := textproto.ReadHeader(bufio.NewReader(&clean))
	if err != nil { // cannot happen after the cleaning above, but never fail open
		malformed = true
	}
	return h, end, malformed
}

// isField reports whether line starts with a field name (RFC 5322 §3.6.8: printable
// US-ASCII except ":") followed by a colon.
func isField(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c >= 127 {
			return false
		}
	}
	return true
}
