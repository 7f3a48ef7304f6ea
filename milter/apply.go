package milter

import (
	"bytes"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
	"github.com/portcullis-mail/portcullis/policy"
)

// field is one line or field of the header block as written, folding and final line
// ending included: a header field with its name, or, without a name, a line that is no
// field (an mbox "From " line, junk the header reader skipped). Those are never shown
// to the milter nor counted by its indexes, but stay where they were when the milter
// edits the header.
type field struct {
	name string
	raw  string
}

// value is what the milter protocol carries: everything after the colon minus the one
// space the MTA swallows (Sendmail's convention, without SMFIP_HDR_LEADSPC), folded
// lines separated by LF, no final line break.
func (f field) value() string {
	v := f.raw[strings.IndexByte(f.raw, ':')+1:]
	v = strings.TrimPrefix(v, " ")
	v = strings.TrimSuffix(strings.TrimSuffix(v, "\n"), "\r")
	return strings.ReplaceAll(v, "\r\n", "\n")
}

// splitHeader returns the header block of raw as it is written, line for line: its
// fields and, as fields without a name, the lines in between that are no field; and the
// offset of the body (past the empty line). mailheader's fields alias raw, which gives
// their offsets.
func splitHeader(raw []byte) ([]field, int) {
	mh := mailheader.Parse(nil, raw, 0)
	out := make([]field, 0, len(mh.Fields))
	pos := 0
	for _, f := range mh.Fields {
		off := cap(raw) - cap(f.Raw) // f.Raw is raw[off:...]
		if off < pos || off > len(raw) {
			return namedOnly(mh), mh.End // cannot happen: mailheader slices raw in order
		}
		if off > pos {
			out = append(out, field{raw: string(raw[pos:off])})
		}
		out = append(out, field{name: string(f.Name), raw: string(f.Raw)})
		pos = off + len(f.Raw)
	}
	// Skipped lines after the last field, up to the empty line that ends the header.
	rest := raw[pos:mh.End]
	if n := len(rest); n > 0 && rest[n-1] == '\n' {
		last := bytes.LastIndexByte(rest[:n-1], '\n') + 1
		if line := rest[last:]; string(line) == "\r\n" || string(line) == "\n" {
			rest = rest[:last]
		}
	}
	if len(rest) > 0 {
		out = append(out, field{raw: string(rest)})
	}
	return out, mh.End
}

func namedOnly(mh mailheader.Header) []field {
	out := make([]field, 0, len(mh.Fields))
	for _, f := range mh.Fields {
		out = append(out, field{name: string(f.Name), raw: string(f.Raw)})
	}
	return out
}

// apply rebuilds the message with the milter's modifications (Sendmail's semantics, as
// Postfix's cleanup applies them): SMFIR_ADDHEADER appends, SMFIR_INSHEADER inserts
// after the index-th field (0: at the top), SMFIR_CHGHEADER replaces the index-th field
// of that name (1-based) or deletes it when the value is empty, SMFIR_REPLBODY chunks
// make the new body. It returns the message and the quarantine reason, if any.
func apply(fields []field, body []byte, mods []gomilter.ModifyAction) ([]byte, string) {
	var newBody *bytes.Buffer
	quarantine := ""
	for _, m := range mods {
		switch m.Type {
		case gomilter.ActionAddHeader:
			if f, ok := newField(m.HeaderName, m.HeaderValue); ok {
				fields = append(fields, f)
			}
		case gomilter.ActionInsertHeader:
			if f, ok := newField(m.HeaderName, m.HeaderValue); ok {
				i := insertAt(fields, int(m.HeaderIndex))
				fields = append(fields[:i], append([]field{f}, fields[i:]...)...)
			}
		case gomilter.ActionChangeHeader:
			n := 0
			for i := range fields {
				if fields[i].name == "" || !strings.EqualFold(fields[i].name, m.HeaderName) {
					continue
				}
				if n++; n != int(m.HeaderIndex) {
					continue
				}
				if m.HeaderValue == "" {
					fields = append(fields[:i], fields[i+1:]...)
				} else if f, ok := newField(fields[i].name, m.HeaderValue); ok {
					fields[i] = f
				}
				break
			}
			if n < int(m.HeaderIndex) && m.HeaderValue != "" {
				if f, ok := newField(m.HeaderName, m.HeaderValue); ok {
					fields = append(fields, f) // past the last one: added (libmilter)
				}
			}
		case gomilter.ActionReplaceBody:
			if newBody == nil {
				newBody = &bytes.Buffer{}
			}
			newBody.Write(m.Body)
		case gomilter.ActionQuarantine:
			quarantine = m.Reason
			if quarantine == "" {
				quarantine = "quarantined"
			}
		}
	}
	var out bytes.Buffer
	for _, f := range fields {
		out.WriteString(f.raw)
	}
	out.WriteString("\r\n")
	if newBody != nil {
		out.Write(crlf(newBody.Bytes()))
	} else {
		out.Write(body)
	}
	return out.Bytes(), quarantine
}

// insertAt returns where a field inserted after the index-th field goes (0: before the
// first field, so below an mbox "From " line; past the last: at the end).
func insertAt(fields []field, index int) int {
	n := 0
	for i, f := range fields {
		if f.name == "" {
			continue
		}
		if n == index {
			return i
		}
		n++
	}
	return len(fields)
}

// newField makes a header field from a milter's name and value: "Name: value" with
// LF-separated folded lines turned into CRLF, sanitised as smtpd writes headers.
func newField(name, value string) (field, bool) {
	value = strings.TrimPrefix(value, " ")
	h, ok := policy.Header{Name: name, Value: strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n")}.Clean()
	if !ok {
		return field{}, false
	}
	return field{name: h.Name, raw: h.Name + ": " + h.Value + "\r\n"}, true
}

// crlf turns bare LF line ends into CRLF.
func crlf(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) {
		return b
	}
	var out bytes.Buffer
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}
