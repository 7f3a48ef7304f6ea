package imapd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/internal/mailheader"
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
			msgs = append(msgs, string(mailheader.CRLF(b)))
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

func TestMsgCacheBudget(t *testing.T) {
	c := newMsgCache(80000)
	doc := func(n int) *textDoc { return &textDoc{bodies: []string{strings.Repeat("x", n)}} }
	for i := range 1000 {
		d := doc(500)
		c.put(textKey("u", fmt.Sprint(i)), d, d.size())
	}
	var used, max int64
	items := 0
	for i := range c.shards {
		sh := &c.shards[i]
		if sh.used > sh.max || len(sh.items) != sh.ll.Len() {
			t.Fatalf("shard %d: used %d of %d, %d items, %d listed", i, sh.used, sh.max, len(sh.items), sh.ll.Len())
		}
		used, max, items = used+sh.used, max+sh.max, items+len(sh.items)
	}
	if items < 50 || used > max {
		t.Fatalf("%d items, %d of %d bytes", items, used, max)
	}
	if c.get(textKey("u", "999")) == nil || c.get(textKey("u", "0")) != nil {
		t.Fatal("not least recently used out")
	}
	if c.get(envelopeKey("u", "999")) != nil || c.get(textKey("v", "999")) != nil {
		t.Fatal("keys of another kind or user collide")
	}
	c.put(textKey("u", "huge"), doc(5000), 5000)
	if c.get(textKey("u", "huge")) != nil {
		t.Fatal("an entry above a quarter of a shard was kept")
	}
	var off *msgCache
	off.put("k", doc(1), 1)
	if off.get("k") != nil {
		t.Fatal("nil cache returned something")
	}
}

// TestEnvelopeAndSearchWithoutCache runs FETCH ENVELOPE and SEARCH TEXT with the memory
// cache off, so the envelope comes from the index the second time, and compares them
// with a server that has the cache.
func TestEnvelopeAndSearchWithoutCache(t *testing.T) {
	for _, size := range []bytesize.Size{-1, 0} {
		e := start(t, Config{CacheSize: size})
		e.deliver(t, "alice@example.org", msgA)
		e.deliver(t, "alice@example.org", msgB)
		c := login(t, e, "alice@example.org", "secret pw", nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Envelope: true}).Collect()
			if err != nil || len(msgs) != 2 || msgs[0].Envelope.Subject != "quarterly report" || msgs[0].Envelope.From[0].Addr() != "ann@example.org" {
				t.Fatalf("cache %d: fetch %+v %v", size, msgs, err)
			}
			for q, want := range map[string]string{"zebra": "[1]", "café": "[2]", "QUARTERLY": "[1]", "nothing-like-it": "[]"} {
				sr, err := c.Search(&imap.SearchCriteria{Text: []string{q}}, nil).Wait()
				if err != nil || fmt.Sprint(sr.AllSeqNums()) != want {
					t.Fatalf("cache %d: search %q = %v %v", size, q, sr.AllSeqNums(), err)
				}
			}
		}
		if size < 0 && e.srv.cache != nil {
			t.Fatal("cache_size -1 did not turn the cache off")
		}
	}
}

// FuzzTextDoc checks that the decoded-text cache answers TEXT and BODY exactly as the
// MIME walk does, on any message.
func FuzzTextDoc(f *testing.F) {
	for _, m := range craftedMessages {
		f.Add([]byte(m), "needle")
	}
	f.Add([]byte("Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: a\r\n\r\nb\r\n--x--\r\n"), "B")
	f.Fuzz(func(t *testing.T, msg []byte, pattern string) {
		doc := newTextDoc(parse(msg))
		for _, withHeader := range []bool{true, false} {
			if got, want := doc.match(pattern, withHeader), walkMatch(parse(msg), pattern, withHeader, 0); got != want {
				t.Fatalf("pattern %q header %v: cached %v, walk %v", pattern, withHeader, got, want)
			}
		}
	})
}
