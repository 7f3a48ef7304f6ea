package sieve

import (
	"bytes"
	"io"
	"strings"
)

// Message is the message a script examines.
type Message interface {
	// Header returns the values of every field named name (case-insensitive), in order,
	// unfolded (CRLFs removed) but not decoded (RFC 2047 decoding is the script's).
	Header(name string) []string
	// Size is the message's size in octets (the size test, RFC 5228 §5.9).
	Size() int64
	// Raw returns the whole message (header and body); read only by the body, editheader
	// and vacation code paths.
	Raw() io.Reader
}

// NewMessage returns a Message over raw, an RFC 5322 message (CRLF or LF line ends). The
// header is indexed once, so lookups cost no allocation.
func NewMessage(raw []byte) Message {
	m := &message{raw: raw, index: make(map[string][]string, 16), size: crlfSize(raw)}
	hdr, _ := splitMessage(raw)
	for _, f := range parseFields(hdr) {
		k := lowerASCII(f.name)
		m.index[k] = append(m.index[k], f.value())
	}
	return m
}

type message struct {
	raw   []byte
	index map[string][]string
	size  int64
}

// crlfSize is the size of b with every bare LF counted as CRLF: the size the message
// has on the wire (RFC 5322 line ends), whatever line ends it is stored with.
func crlfSize(b []byte) int64 {
	n := int64(len(b))
	for i := 0; ; i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return n
		}
		i += j
		if i == 0 || b[i-1] != '\r' {
			n++
		}
	}
}

func (m *message) Header(name string) []string {
	if v, ok := m.index[name]; ok {
		return v
	}
	if hasUpper(name) {
		return m.index[lowerASCII(name)]
	}
	return nil
}
func (m *message) Size() int64    { return m.size }
func (m *message) Raw() io.Reader { return bytes.NewReader(m.raw) }
func (m *message) bytes() []byte  { return m.raw }

// field is one header field as it appears: name and raw value after the colon,
// folding included, without the final line break.
type field struct {
	name string
	raw  string
}

// value is the field's unfolded value with leading and trailing white space removed
// (RFC 5228 §5.7 ignores them).
func (f field) value() string {
	v := f.raw
	if strings.IndexByte(v, '\n') >= 0 {
		v = strings.ReplaceAll(strings.ReplaceAll(v, "\r\n", ""), "\n", "")
	}
	return strings.Trim(v, " \t\r")
}

// splitMessage returns the header block (without the empty line) and the body.
func splitMessage(raw []byte) (hdr, body []byte) {
	if len(raw) > 0 && (raw[0] == '\n' || bytes.HasPrefix(raw, []byte("\r\n"))) {
		if raw[0] == '\n' {
			return nil, raw[1:]
		}
		return nil, raw[2:]
	}
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return raw, nil
		}
		j += i
		next := j + 1
		if next < len(raw) && raw[next] == '\n' {
			return raw[:next], raw[next+1:]
		}
		if next+1 < len(raw) && raw[next] == '\r' && raw[next+1] == '\n' {
			return raw[:next], raw[next+2:]
		}
		i = next
	}
	return raw, nil
}

// parseFields splits a header block into fields; lines that are no field are skipped.
func parseFields(hdr []byte) []field {
	var out []field
	s := string(hdr)
	for len(s) > 0 {
		end := 0
		for {
			nl := strings.IndexByte(s[end:], '\n')
			if nl < 0 {
				end = len(s)
				break
			}
			end += nl + 1
			if end >= len(s) || (s[end] != ' ' && s[end] != '\t') {
				break
			}
		}
		line := strings.TrimRight(s[:end], "\r\n")
		s = s[end:]
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := strings.TrimRight(line[:colon], " \t")
		if !validFieldName(name) {
			continue
		}
		out = append(out, field{name: name, raw: line[colon+1:]})
	}
	return out
}

func validFieldName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c <= ' ' || c >= 127 || c == ':' {
			return false
		}
	}
	return true
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func lowerASCII(s string) string {
	if !hasUpper(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
