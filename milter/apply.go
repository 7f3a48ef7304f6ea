package milter

import (
	"bytes"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"github.com/portcullis-mail/portcullis/policy"
)

// field is one header field as written: its name and the whole raw field, folding and
// final CRLF included.
type field struct {
	name string
	raw  string
}

// value is what the milter protocol carries: everything after the colon minus the one
// space the MTA swallows (Sendmail's convention, without SMFIP_HDR_LEADSPC), folded
// lines separated by LF, no final line break.
func (f field) value() string {
	v := f.raw[len(f.name)+1:]
	v = strings.TrimPrefix(v, " ")
	v = strings.TrimSuffix(strings.TrimSuffix(v, "\n"), "\r")
	return strings.ReplaceAll(v, "\r\n", "\n")
}

// splitHeader returns the header fields of raw and the offset of its body (past the
// empty line).
func splitHeader(raw []byte) ([]field, int) {
	h, end, _ := policy.ParseHeader(raw)
	var out []field
	for fs := h.Fields(); fs.Next(); {
		r, err := fs.Raw()
		if err != nil {
			continue
		}
		out = append(out, field{name: fs.Key(), raw: string(r)})
	}
	// textproto.Header lists fields from the top; keep that order.
	return out, end
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
				i := min(int(m.HeaderIndex), len(fields))
				fields = append(fields[:i], append([]field{f}, fields[i:]...)...)
			}
		case gomilter.ActionChangeHeader:
			n := 0
			for i := range fields {
				if !strings.EqualFold(fields[i].name, m.HeaderName) {
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
