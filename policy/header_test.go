package policy

import (
	"bytes"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// The fields keep their bytes, so a header that is only read and written back (as
// smtpd.RewriteHeader does) is unchanged but for the skipped lines, and LF endings
// become CRLF.
func TestParseHeaderWritesBack(t *testing.T) {
	for in, want := range map[string]string{
		"From: a@example.net\r\nSubject:  two\r\n\tlines\r\n\r\nbody": "From: a@example.net\r\nSubject:  two\r\n\tlines\r\n\r\n",
		"From: a\nSubject: b\n c\n\nbody":                             "From: a\r\nSubject: b\r\n c\r\n\r\n",
		"junk\r\nFrom: a\r\nmore junk\r\n\tits continuation\r\nTo: b": "From: a\r\nTo: b\r\n\r\n",
	} {
		h, _, _ := ParseHeader([]byte(in))
		var b bytes.Buffer
		if err := textproto.WriteHeader(&b, h); err != nil || b.String() != want {
			t.Errorf("ParseHeader(%q) writes %q, %v; want %q", in, b.String(), err, want)
		}
	}
	h, end, bad := ParseHeader([]byte("From a@example.net Mon Jan  5 10:00:00 2026\nSubject: s\n\nbody"))
	if !bad || h.Get("Subject") != "s" || end != 56 {
		t.Errorf("mbox From line: malformed %v, subject %q, end %d", bad, h.Get("Subject"), end)
	}
}
