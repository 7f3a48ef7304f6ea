package smtpd

import (
	"strings"
	"testing"
)

// FuzzXCLIENT: the attribute parser never panics, and what it accepts is safe to log
// and to put in headers: no control characters, spaces or 8-bit bytes in a value.
func FuzzXCLIENT(f *testing.F) {
	for _, s := range []string{
		"ADDR=192.0.2.1 NAME=mail.example.org",
		"ADDR=IPV6:2001:db8::1 PORT=25 PROTO=ESMTP HELO=x+2Ey",
		"NAME=[TEMPUNAVAIL] REVERSE_NAME=[UNAVAILABLE] LOGIN=a+40b",
		"HELO=+0D+0A", "LOGIN=+", "LOGIN=+4", "PORT=-1", "DESTADDR=::ffff:192.0.2.1",
		"", "=", "ADDR==", "name=a.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		attrs, err := parseXCLIENT(s)
		if err != nil {
			var xe *xclientError
			if !asXclientError(err, &xe) || xe.reply.Code != 501 {
				t.Fatalf("%q: error %v is not a 501 reply", s, err)
			}
			return
		}
		for _, a := range attrs {
			if strings.ContainsFunc(a.Value, func(r rune) bool { return r <= ' ' || r > '~' }) {
				t.Fatalf("%q: attribute %s has unsafe value %q", s, a.Name, a.Value)
			}
			if !knownXclientAttr(a.Name) {
				t.Fatalf("%q: unknown attribute %s accepted", s, a.Name)
			}
		}
	})
}

func asXclientError(err error, xe **xclientError) bool {
	e, ok := err.(*xclientError)
	*xe = e
	return ok
}

// TestXtextDecode: RFC 3461 §4's examples and its errors.
func TestXtextDecode(t *testing.T) {
	for in, want := range map[string]string{
		"abc": "abc", "a+2Bb": "a+b", "a+3db": "a=b", "+41+42": "AB", "": "",
	} {
		if got, err := xtextDecode(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"+", "+4", "a+4g", "a=b", "a b", "\x80", "+-1"} {
		if got, err := xtextDecode(in); err == nil {
			t.Errorf("%q: decoded to %q, want an error", in, got)
		}
	}
}
