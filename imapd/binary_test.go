package imapd

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// APPEND with a literal8 (RFC 3516 §4.2): the bytes of a binary entity (NUL, bare CR
// and LF, 0xff, no line end at the end) come back exactly through FETCH BINARY[part]
// and BINARY.SIZE, with go-imap's client; BODY[] carries them in base64 (an IMAP
// literal cannot carry a NUL), and the other entities are kept byte for byte. Before,
// the store served the bare line ends as CRLF.
func TestAppendBinaryRoundTrips(t *testing.T) {
	e := start(t, Config{})
	payload := []byte("\x00\x01\rA\nB\r\n\xff\xfe" + strings.Repeat("\x00z\n", 40) + "\r")
	text := "Caf\xe9 at noon?\r\n"
	msgs := []string{
		// A multipart with a text part (8bit) and a binary part.
		"From: a@b.org\r\nSubject: bin\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n" +
			"--xx\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text +
			"\r\n--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding:\r\n BINARY\r\n\r\n" + string(payload) +
			"\r\n--xx--\r\n",
		// A single-part message whose body is binary.
		"From: a@b.org\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + string(payload),
	}
	r := dialRaw(t, e.addr)
	r.starttls()
	r.ok(`LOGIN alice@example.org "secret pw"`)
	for _, m := range msgs {
		if _, st := r.cmd("APPEND INBOX ~{%d+}\r\n%s", len(m), m); !strings.HasPrefix(st, "OK [APPENDUID") {
			t.Fatalf("APPEND literal8: %s", st)
		}
	}

	c := login(t, e, "alice@example.org", "secret pw", nil)
	if !c.Caps().Has(imap.CapBinary) {
		t.Fatalf("BINARY not announced")
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fetch := func(seq uint32, part []int) (bin []byte, size uint32, body []byte) {
		t.Helper()
		bs := &imap.FetchItemBinarySection{Part: part, Peek: true}
		bss := &imap.FetchItemBinarySectionSize{Part: part}
		whole := &imap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{
			BinarySection: []*imap.FetchItemBinarySection{bs}, BinarySectionSize: []*imap.FetchItemBinarySectionSize{bss},
			BodySection: []*imap.FetchItemBodySection{whole},
		}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("FETCH %d: %v", seq, err)
		}
		return msgs[0].FindBinarySection(bs), msgs[0].BinarySectionSize[0].Size, msgs[0].FindBodySection(whole)
	}
	for i, part := range [][]int{{2}, {1}} {
		bin, size, body := fetch(uint32(i+1), part)
		if !bytes.Equal(bin, payload) || size != uint32(len(payload)) {
			t.Errorf("message %d BINARY%v: %q (size %d), want %q (%d)", i+1, part, bin, size, payload, len(payload))
		}
		if bytes.IndexByte(body, 0) >= 0 || !bytes.Contains(body, []byte("Content-Transfer-Encoding: base64\r\n")) {
			t.Errorf("message %d BODY[]: %q", i+1, body)
		}
	}
	bin, _, body := fetch(1, []int{1})
	if string(bin) != text || !bytes.Contains(body, []byte("Content-Transfer-Encoding: 8bit\r\n\r\n"+text+"\r\n--xx\r\n")) {
		t.Errorf("the 8bit part: %q in %q", bin, body)
	}
}

// The header of a binary entity loses its Content-Transfer-Encoding fields (folded ones
// too) and gains one saying base64; the body is in lines of 76 characters.
func TestBinaryAppendConversion(t *testing.T) {
	got := string(appendBase64Header(nil, []byte("Content-Type: a/b\r\nContent-transfer-encoding:\r\n binary\r\nX: y\r\n\r\n"), true))
	if want := "Content-Type: a/b\r\nX: y\r\nContent-Transfer-Encoding: base64\r\n\r\n"; got != want {
		t.Errorf("header: %q, want %q", got, want)
	}
	lines := strings.Split(string(appendBase64Lines(nil, bytes.Repeat([]byte{0}, 120))), "\r\n")
	if len(lines) != 3 || len(lines[0]) != 76 || len(lines[2]) != 8 {
		t.Errorf("base64 lines: %q", lines)
	}
	if s := string(appendBase64Lines(nil, nil)); s != "" {
		t.Errorf("empty body: %q", s)
	}
}

// FuzzBinaryToBase64: any message converts without a panic, leaves no binary entity
// behind (a second conversion changes nothing), and keeps a message without one as it is.
func FuzzBinaryToBase64(f *testing.F) {
	f.Add([]byte("Content-Transfer-Encoding: binary\r\n\r\n\x00\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\n--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Transfer-Encoding: binary\r\n\r\nx\r\n--b--\r\n"))
	f.Add([]byte("Subject: plain\r\n\r\nbody\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := binaryToBase64(msg)
		if err != nil {
			return
		}
		again, err := binaryToBase64(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("converted twice: %q then %q (%v)", out, again, err)
		}
	})
}

// A CATENATE TEXT part may be a literal8 when BINARY is offered (RFC 4469 §3): its binary
// entities are stored in base64 as a literal8 APPEND's are, so BODY[] carries no NUL
// (RFC 9051 §4.3) and BINARY[] gives the bytes back.
func TestCatenateBinaryText(t *testing.T) {
	e := start(t, Config{Trusted: true})
	payload := "\x00\x01\xff\r\n\x00"
	head := "From: a@b.org\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	if _, st := r.cmd("APPEND INBOX CATENATE (TEXT {%d+}\r\n%s TEXT ~{%d+}\r\n%s)", len(head), head, len(payload), payload); !strings.HasPrefix(st, "OK [APPENDUID") {
		t.Fatalf("APPEND CATENATE literal8: %s", st)
	}
	r.ok("SELECT INBOX")
	lines := r.ok("FETCH 1 (BODY.PEEK[] BINARY.PEEK[1])")
	all := strings.Join(lines, "\n")
	body, _, _ := strings.Cut(all, " BINARY[1]")
	if strings.IndexByte(body, 0) >= 0 || !strings.Contains(body, "Content-Transfer-Encoding: base64") {
		t.Errorf("stored with its NULs: %q", all)
	}
	if !strings.Contains(all, fmt.Sprintf("BINARY[1] ~{%d}", len(payload))) {
		t.Errorf("BINARY[1]: %q", all)
	}
}
