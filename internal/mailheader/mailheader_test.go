package mailheader

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type want struct {
	fields               []string // Raw of each field
	end                  int      // -1: len(input)
	junk, mboxFrom, long bool
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		limit    int
		want     want
	}{
		{"crlf", "From: a\r\nSubject: b\r\n\r\nbody", 0,
			want{fields: []string{"From: a\r\n", "Subject: b\r\n"}, end: 23}},
		{"lf", "From: a\nSubject: b\n\nbody", 0,
			want{fields: []string{"From: a\n", "Subject: b\n"}, end: 20}},
		{"folded", "Subject: a\r\n\tb\r\n c\r\nX: y\r\n\r\n", 0,
			want{fields: []string{"Subject: a\r\n\tb\r\n c\r\n", "X: y\r\n"}, end: -1}},
		{"no body", "Subject: no body", 0,
			want{fields: []string{"Subject: no body"}, end: -1}},
		{"empty", "", 0, want{end: 0}},
		{"only body", "\r\nbody", 0, want{end: 2}},
		{"space before colon", "Subject : x\r\n\r\n", 0,
			want{fields: []string{"Subject : x\r\n"}, end: -1}},
		// A junk line is skipped and reading goes on: it must not hide the fields
		// after it.
		{"junk first line", "Junk line\r\nFrom: a\r\n\r\n", 0,
			want{fields: []string{"From: a\r\n"}, end: -1, junk: true}},
		{"junk between", "From: a\r\n: no name\r\nbad name: x\r\nTo: b\r\n\r\n", 0,
			want{fields: []string{"From: a\r\n", "To: b\r\n"}, end: -1, junk: true}},
		// A continuation after a junk line goes with it; the field before it is
		// not extended.
		{"continuation after junk", "From: a\r\njunk\r\n\tmore\r\nTo: b\r\n\r\n", 0,
			want{fields: []string{"From: a\r\n", "To: b\r\n"}, end: -1, junk: true}},
		{"leading continuation", " From: a\r\nTo: b\r\n\r\n", 0,
			want{fields: []string{"To: b\r\n"}, end: -1, junk: true}},
		{"mbox From", "From a@example.net Mon Jan  5 10:00:00 2026\nTo: b\n\n", 0,
			want{fields: []string{"To: b\n"}, end: -1, mboxFrom: true}},
		{"From later is junk", "To: b\nFrom a@example.net Mon Jan  5 10:00:00 2026\n\n", 0,
			want{fields: []string{"To: b\n"}, end: -1, junk: true}},
		// Only LF or CRLF ends the header; a line holding a CR is junk.
		{"lone CR line", "A: 1\r\n\r\r\nB: 2\r\n\r\n", 0,
			want{fields: []string{"A: 1\r\n", "B: 2\r\n"}, end: -1, junk: true}},
		{"CR at the end", "A: 1\r\n\r", 0,
			want{fields: []string{"A: 1\r\n"}, end: -1}},
		// Limits.
		{"field past the limit", "A: 1\r\nB: 2\r\n\tx\r\nC: 3\r\n\r\n", 6,
			want{fields: []string{"A: 1\r\n"}, end: -1, long: true}},
		// Only a prefix of a field is kept: " 4" would fit, but " 333" did not.
		{"continuations past the limit", "B: 2\r\nA: 1\r\n 22\r\n 333\r\n 4\r\n\r\n", 9,
			want{fields: []string{"B: 2\r\n", "A: 1\r\n 22\r\n"}, end: -1, long: true}},
		{"long first line cut", "Subject: " + strings.Repeat("x", 20) + "\r\n more\r\n\r\nbody", 12,
			want{fields: []string{"Subject: xxx"}, end: 40, long: true}},
		{"long name dropped", "X-" + strings.Repeat("n", 20) + ": v\r\n cont\r\n\r\n", 10,
			want{end: -1, long: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Parse(nil, []byte(tc.in), tc.limit)
			var got []string
			for _, f := range h.Fields {
				got = append(got, string(f.Raw))
			}
			end := tc.want.end
			if end < 0 {
				end = len(tc.in)
			}
			if strings.Join(got, "|") != strings.Join(tc.want.fields, "|") || h.End != end ||
				h.Junk != tc.want.junk || h.MboxFrom != tc.want.mboxFrom || h.Long != tc.want.long {
				t.Errorf("Parse(%q, %d) = fields %q end %d junk %v mbox %v long %v, want %q end %d junk %v mbox %v long %v",
					tc.in, tc.limit, got, h.End, h.Junk, h.MboxFrom, h.Long,
					tc.want.fields, end, tc.want.junk, tc.want.mboxFrom, tc.want.long)
			}
		})
	}
}

func TestField(t *testing.T) {
	h := Parse(nil, []byte("Subject :  a\r\n\t b \r\n c\r\nTo: x\r\nCc: y\r"), 0)
	if len(h.Fields) != 3 {
		t.Fatalf("%d fields", len(h.Fields))
	}
	f := h.Fields[0]
	if string(f.Name) != "Subject" || !f.Is("SUBJECT") || f.Is("Subjec") {
		t.Errorf("name %q", f.Name)
	}
	if string(f.Body()) != "  a\r\n\t b \r\n c\r\n" {
		t.Errorf("body %q", f.Body())
	}
	// RFC 5322 §2.2.3: unfolding removes the line breaks only.
	if v := f.Value(); v != "a\t b  c" {
		t.Errorf("value %q", v)
	}
	if v := h.Fields[1].Value(); v != "x" {
		t.Errorf("value %q", v)
	}
	if v := h.Fields[2].Value(); v != "y" {
		t.Errorf("value %q", v)
	}
}

func TestParseAppends(t *testing.T) {
	buf := make([]Field, 1, 8)
	h := Parse(buf, []byte("A: 1\n\n"), 0)
	if len(h.Fields) != 2 || &h.Fields[0] != &buf[0] || string(h.Fields[1].Name) != "A" {
		t.Fatalf("fields %v", h.Fields)
	}
}

func TestReadBlock(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		limit    int
		err      error
	}{
		{"A: 1\r\nB: 2\r\n\r\nbody", "A: 1\r\nB: 2\r\n", 100, nil},
		{"A: 1\nB: 2\n\nbody", "A: 1\nB: 2\n", 100, nil},
		{"A: 1\r\nB: 2", "A: 1\r\nB: 2", 100, nil},
		{"A: 1\r\n\r", "A: 1\r\n", 100, nil},
		{"A: 1\r\n\r\r\nB: 2\r\n\r\n", "A: 1\r\n\r\r\nB: 2\r\n", 100, nil},
		{"\r\nbody", "", 100, nil},
		{"", "", 100, nil},
		// The limit: a block of exactly limit bytes is whole, with or without an
		// empty line after it.
		{"A: 1\r\n\r\nbody", "A: 1\r\n", 6, nil},
		{"A: 1\r\n", "A: 1\r\n", 6, nil},
		{"A: 1\r\nB: 2\r\n\r\n", "A: 1\r\n", 6, ErrTooLong},
		{"A: 12345678", "A: 1", 4, ErrTooLong},
		{"A: 1\r\n\r", "A: 1\r", 5, ErrTooLong},
	} {
		for _, mode := range []string{"whole", "one byte"} {
			var r io.Reader = strings.NewReader(tc.in)
			if mode == "one byte" {
				r = iotest.OneByteReader(r)
			}
			got, err := ReadBlock(r, tc.limit)
			if string(got) != tc.want || !errors.Is(err, tc.err) && err != tc.err {
				t.Errorf("ReadBlock(%q, %d) %s = %q, %v; want %q, %v", tc.in, tc.limit, mode, got, err, tc.want, tc.err)
			}
		}
	}
	boom := errors.New("boom")
	got, err := ReadBlock(io.MultiReader(strings.NewReader("A: 1\r\n"), iotest.ErrReader(boom)), 100)
	if string(got) != "A: 1\r\n" || err != boom {
		t.Errorf("read error: %q, %v", got, err)
	}
}

// ReadBlock stops where Parse ends the header, for any input.
func FuzzReadBlock(f *testing.F) {
	for _, s := range []string{"A: 1\r\nB: 2\r\n\r\nbody", "junk\n\tx\nA: b\n\nbody", "A: 1\r\n\r", "\r\r\n\r\n", "From x\n \n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h := Parse(nil, b, 0)
		if h.End < 0 || h.End > len(b) {
			t.Fatalf("end %d of %d", h.End, len(b))
		}
		block, err := ReadBlock(iotest.HalfReader(bytes.NewReader(b)), len(b))
		if err != nil || !bytes.HasPrefix(b, block) {
			t.Fatalf("ReadBlock = %q, %v", block, err)
		}
		switch blank := string(b[len(block):h.End]); blank {
		case "", "\n", "\r\n", "\r":
		default:
			t.Fatalf("Parse ends at %d, ReadBlock at %d (%q)", h.End, len(block), blank)
		}
		hb := Parse(nil, block, 0)
		if len(hb.Fields) != len(h.Fields) {
			t.Fatalf("%d fields in the block, %d in the message", len(hb.Fields), len(h.Fields))
		}
		for i, f := range h.Fields {
			if !bytes.Equal(f.Raw, hb.Fields[i].Raw) {
				t.Fatalf("field %d: %q and %q", i, f.Raw, hb.Fields[i].Raw)
			}
			if !bytes.HasPrefix(f.Raw, f.Name) || f.Raw[f.colon] != ':' {
				t.Fatalf("field %q: name %q colon %d", f.Raw, f.Name, f.colon)
			}
			c, lines := CRLF(f.Raw), bytes.Count(f.Raw, []byte("\n"))
			if !bytes.HasSuffix(f.Raw, []byte("\n")) {
				lines++
			}
			if !isCRLF(c) || bytes.Count(c, []byte("\n")) != lines {
				t.Fatalf("CRLF(%q) = %q", f.Raw, c)
			}
		}
		// A limit keeps a prefix of the fields, each a prefix of the whole field.
		lim := Parse(nil, b, 40)
		if len(lim.Fields) > len(h.Fields) || lim.End != h.End {
			t.Fatalf("limit: %d fields end %d", len(lim.Fields), lim.End)
		}
		for i, f := range lim.Fields {
			if !bytes.HasPrefix(h.Fields[i].Raw, f.Raw) || len(f.Value()) > 40 {
				t.Fatalf("limit: field %q of %q", f.Raw, h.Fields[i].Raw)
			}
		}
	})
}

func TestCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"A: 1\r\n":          "A: 1\r\n",
		"A: 1\n b\n":        "A: 1\r\n b\r\n",
		"A: 1\r\n b":        "A: 1\r\n b\r\n",
		"A: 1\r\r\n":        "A: 1\r\r\n",
		"A: 1\r\n b\nC\r\n": "A: 1\r\n b\r\nC\r\n",
	} {
		got := CRLF([]byte(in))
		if string(got) != want {
			t.Errorf("CRLF(%q) = %q, want %q", in, got, want)
		}
	}
	b := []byte("A: 1\r\n")
	if c := CRLF(b); &c[0] != &b[0] {
		t.Error("CRLF copied a CRLF field")
	}
}
