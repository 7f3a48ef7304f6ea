package milter

import (
	"strings"
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

// TestApplyKeepsNonFieldLines: when a milter edits the header, what it did not change
// stays byte for byte: an mbox "From " line on top, a junk line among the fields, a
// field with white space before its colon and bare-LF folding; those lines are not
// fields, so the milter's indexes do not count them.
func TestApplyKeepsNonFieldLines(t *testing.T) {
	raw := "From sender@example.org Sun Dec  6 10:00:00 2026\r\n" +
		"Received: a\r\n" +
		"this line is no field\r\n" +
		"Subject : one\r\n\tfolded\r\n" +
		"X-Spam: old\r\n" +
		"junk after the last field\r\n" +
		"\r\nbody\r\n"
	for _, c := range []struct {
		name string
		mods []gomilter.ModifyAction
		want string
	}{
		{"add", []gomilter.ModifyAction{{Type: gomilter.ActionAddHeader, HeaderName: "X-Added", HeaderValue: "v"}},
			strings.Replace(raw, "junk after the last field\r\n", "junk after the last field\r\nX-Added: v\r\n", 1)},
		{"insert at top: below the From line", []gomilter.ModifyAction{{Type: gomilter.ActionInsertHeader, HeaderIndex: 0, HeaderName: "X-Top", HeaderValue: "t"}},
			strings.Replace(raw, "Received: a\r\n", "X-Top: t\r\nReceived: a\r\n", 1)},
		{"insert after the first field", []gomilter.ModifyAction{{Type: gomilter.ActionInsertHeader, HeaderIndex: 1, HeaderName: "X-Two", HeaderValue: "t"}},
			strings.Replace(raw, "this line is no field\r\n", "this line is no field\r\nX-Two: t\r\n", 1)},
		{"change", []gomilter.ModifyAction{{Type: gomilter.ActionChangeHeader, HeaderIndex: 1, HeaderName: "X-Spam", HeaderValue: "new"}},
			strings.Replace(raw, "X-Spam: old", "X-Spam: new", 1)},
		{"delete", []gomilter.ModifyAction{{Type: gomilter.ActionChangeHeader, HeaderIndex: 1, HeaderName: "Subject", HeaderValue: ""}},
			strings.Replace(raw, "Subject : one\r\n\tfolded\r\n", "", 1)},
	} {
		fields, end := splitHeader([]byte(raw))
		out, _ := apply(fields, []byte(raw)[end:], c.mods)
		if string(out) != c.want {
			t.Errorf("%s:\n%q\nwant\n%q", c.name, out, c.want)
		}
	}
	fields, _ := splitHeader([]byte(raw))
	var names []string
	for _, f := range fields {
		if f.name != "" {
			names = append(names, f.name+"="+f.value())
		}
	}
	if got := strings.Join(names, "|"); got != "Received=a|Subject=one\n\tfolded|X-Spam=old" {
		t.Errorf("the fields the milter sees: %q", got)
	}
	// An LF-only message keeps its From line too.
	lf := "From x@y Sun Dec  6 10:00:00 2026\nA: 1\n\nbody\n"
	fields, end := splitHeader([]byte(lf))
	if out, _ := apply(fields, []byte(lf)[end:], []gomilter.ModifyAction{{Type: gomilter.ActionChangeHeader, HeaderIndex: 1, HeaderName: "A", HeaderValue: "2"}}); !strings.HasPrefix(string(out), "From x@y Sun Dec  6 10:00:00 2026\nA: 2\r\n") {
		t.Errorf("LF message: %q", out)
	}
}
