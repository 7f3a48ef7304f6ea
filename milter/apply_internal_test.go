package milter

import (
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// TestApply: the modifications a milter may send, applied as Postfix's cleanup applies
// them.
func TestApply(t *testing.T) {
	raw := "Received: a\r\nSubject: one\r\nX-Spam: old\r\nX-Spam: second\r\n\r\nbody\r\n"
	for _, c := range []struct {
		name string
		mods []gomilter.ModifyAction
		want string
	}{
		{"none", nil, raw},
		{"add", []gomilter.ModifyAction{{Type: gomilter.ActionAddHeader, HeaderName: "X-Added", HeaderValue: "v\n\tfolded"}},
			"Received: a\r\nSubject: one\r\nX-Spam: old\r\nX-Spam: second\r\nX-Added: v\r\n\tfolded\r\n\r\nbody\r\n"},
		{"insert at top", []gomilter.ModifyAction{{Type: gomilter.ActionInsertHeader, HeaderIndex: 0, HeaderName: "X-Top", HeaderValue: "t"}},
			"X-Top: t\r\n" + raw},
		{"insert after the first", []gomilter.ModifyAction{{Type: gomilter.ActionInsertHeader, HeaderIndex: 1, HeaderName: "X-Two", HeaderValue: "t"}},
			"Received: a\r\nX-Two: t\r\nSubject: one\r\nX-Spam: old\r\nX-Spam: second\r\n\r\nbody\r\n"},
		{"change the second of a name", []gomilter.ModifyAction{{Type: gomilter.ActionChangeHeader, HeaderIndex: 2, HeaderName: "x-spam", HeaderValue: "new"}},
			"Received: a\r\nSubject: one\r\nX-Spam: old\r\nX-Spam: new\r\n\r\nbody\r\n"},
		{"delete", []gomilter.ModifyAction{{Type: gomilter.ActionChangeHeader, HeaderIndex: 1, HeaderName: "X-Spam", HeaderValue: ""}},
			"Received: a\r\nSubject: one\r\nX-Spam: second\r\n\r\nbody\r\n"},
		{"change past the last adds", []gomilter.ModifyAction{{Type: gomilter.ActionChangeHeader, HeaderIndex: 5, HeaderName: "X-Spam", HeaderValue: "v"}},
			"Received: a\r\nSubject: one\r\nX-Spam: old\r\nX-Spam: second\r\nX-Spam: v\r\n\r\nbody\r\n"},
		{"header injection refused", []gomilter.ModifyAction{{Type: gomilter.ActionAddHeader, HeaderName: "Bad Name", HeaderValue: "v"}}, raw},
		{"body replaced in chunks, LF made CRLF", []gomilter.ModifyAction{{Type: gomilter.ActionReplaceBody, Body: []byte("new\n")}, {Type: gomilter.ActionReplaceBody, Body: []byte("body\r\n")}},
			"Received: a\r\nSubject: one\r\nX-Spam: old\r\nX-Spam: second\r\n\r\nnew\r\nbody\r\n"},
	} {
		fields, end := splitHeader([]byte(raw))
		out, _ := apply(fields, []byte(raw)[end:], c.mods)
		if string(out) != c.want {
			t.Errorf("%s:\n%q\nwant\n%q", c.name, out, c.want)
		}
	}
	fields, end := splitHeader([]byte(raw))
	if _, q := apply(fields, []byte(raw)[end:], []gomilter.ModifyAction{{Type: gomilter.ActionQuarantine, Reason: "spam"}}); q != "spam" {
		t.Errorf("quarantine reason %q", q)
	}
	if v := fields[1].value(); v != "one" {
		t.Errorf("value %q", v)
	}
}
