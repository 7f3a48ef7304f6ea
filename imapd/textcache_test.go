package imapd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// walkMatch is the search as it was before textDoc: walk the MIME tree for every pattern.
// It is the oracle textDoc must agree with.
func walkMatch(e *gomessage.Entity, pattern string, withHeader bool, depth int) bool {
	if pattern == "" {
		return true
	}
	if depth > maxMIMEDepth {
		return false
	}
	if withHeader && matchHeaderFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if walkMatch(part, pattern, withHeader, depth+1) {
				return true
			}
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil {
		t = "text/plain"
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, err := io.ReadAll(e.Body)
	if err != nil && len(b) == 0 {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(pattern)))
}

func parse(b []byte) *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(b))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

var craftedMessages = []string{
	"Subject: caf=?iso-8859-1?q?=E9?=\r\n\r\nplain body ZEBRA\r\n",
	"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nd=E9j=E0 vu, caf=E9\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble needle\r\n--b\r\nContent-Type: text/plain\r\nX-Part: inner header\r\n\r\nfirst part\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nbmVlZGxlIGluIGJpbmFyeQ==\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+bmVlZGxlPC9iPg==\r\n--b--\r\nepilogue\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\ntruncated multipart, no end\r\n",
	"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nforwarded needle\r\n",
	"Content-Type: text/plain; charset=x-unknown\r\n\r\nunknown charset needle \xff\xfe\r\n",
	"no header at all, needle",
	"",
}

var patterns = []string{"needle", "NEEDLE", "café", "CAFÉ", "déjà", "zebra", "inner header", "preamble", "epilogue",
	"binary", "<b>", "subject", "the", "click here", "http://", "content-type", "=e9", "\r\n", " ", "\xff", "zzzz-not-there", ""}

// TestTextDocMatchesWalk checks that the cached text gives exactly the walk's answers for
// TEXT and BODY, on crafted MIME messages and on the SpamAssassin corpus.
func TestTextDocMatchesWalk(t *testing.T) {
	msgs := append([]string(nil), craftedMessages...)
	dir := testenv.Corpus(t)
	for _, sub := range []string{"test/ham", "test/spam"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*.eml"))
		for i, f := range files {
			if i%4 != 0 {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, string(toCRLF(b)))
		}
	}
	if len(msgs) < 100 {
		t.Fatalf("only %d messages", len(msgs))
	}
	hits := 0
	for i, m := range msgs {
		doc := newTextDoc(parse([]byte(m)))
		for _, p := range patterns {
			for _, withHeader := range []bool{true, false} {
				want := walkMatch(parse([]byte(m)), p, withHeader, 0)
				if got := doc.match(p, withHeader); got != want {
					t.Fatalf("message %d pattern %q header %v: cached %v, walk %v", i, p, withHeader, got, want)
				}
				if want {
					hits++
				}
			}
		}
	}
	if hits == 0 {
		t.Fatal("no pattern matched anything")
	}
}

func TestTextCacheBudget(t *testing.T) {
	c := newTextCache(10000)
	doc := func(n int) *textDoc { return &textDoc{bodies: []string{strings.Repeat("x", n)}} }
	for i := range 100 {
		c.put(textKey("u", fmt.Sprint(i)), doc(500))
	}
	if c.used > c.max || len(c.items) == 0 || len(c.items) != c.ll.Len() {
		t.Fatalf("used %d of %d, %d items, %d listed", c.used, c.max, len(c.items), c.ll.Len())
	}
	if c.get(textKey("u", "99")) == nil || c.get(textKey("u", "0")) != nil {
		t.Fatal("not least recently used out")
	}
	c.put(textKey("u", "huge"), doc(5000))
	if c.get(textKey("u", "huge")) != nil {
		t.Fatal("an entry above an eighth of the budget was kept")
	}
	var off *textCache
	off.put("k", doc(1))
	if off.get("k") != nil {
		t.Fatal("nil cache returned something")
	}
}
