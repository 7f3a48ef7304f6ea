package imapd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// sectionMessages are crafted MIME messages for the section tests, CRLF.
var sectionMessages = []string{
	"Subject: plain\r\nFrom: a@example.org\r\n\r\nline one\r\nline two\r\n",
	"Subject: no body\r\nFrom: a@example.org\r\n",
	"Subject: no final newline\r\n\r\nbody without line end",
	"",
	"Content-Type: multipart/mixed; boundary=b\r\nSubject: multi\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain\r\nX-Part: one\r\n\r\nfirst part\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nbmVlZGxlIGluIGJpbmFyeQ==\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<b>caf=C3=A9</b>=\r\n end\r\n--b--\r\nepilogue\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\ntruncated multipart, no end\r\n",
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nalt text\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>alt html</p>\r\n--inner--\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\nSubject: inner message\r\nFrom: Inner <inner@example.org>\r\nContent-Type: multipart/mixed; boundary=deep\r\n\r\n--deep\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n--deep\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--deep--\r\n\r\n--outer--\r\n",
	"Content-Type: message/rfc822\r\n\r\nSubject: forwarded\r\nTo: x@example.org\r\n\r\nforwarded body\r\n",
	"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: digest one\r\n\r\nfirst digest\r\n--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--d--\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\r\n--b--\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b  \r\nContent-Type: text/plain\r\n\r\npadded boundary\r\n--b-- \t\r\n",
	"Subject: folded\r\n  continuation\r\nTo: a@example.org,\r\n\tb@example.org\r\nX-Empty:\r\n\r\nbody\r\n",
	"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nd=E9j=E0 vu\r\n",
	"Content-Type: multipart/mixed\r\n\r\nno boundary parameter\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n",
}

// sectionSpecs are the sections asked of every message, besides those of its parts.
func sectionSpecs(paths [][]int) []*imap.FetchItemBodySection {
	specs := []*imap.FetchItemBodySection{
		{},
		{Specifier: imap.PartSpecifierHeader},
		{Specifier: imap.PartSpecifierText},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "subject", "Content-Type", "To"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Received", "subject", "X-Spam-Status"}},
	}
	for _, p := range paths {
		specs = append(specs,
			&imap.FetchItemBodySection{Part: p},
			&imap.FetchItemBodySection{Part: p, Specifier: imap.PartSpecifierMIME},
			&imap.FetchItemBodySection{Part: p, Specifier: imap.PartSpecifierHeader},
			&imap.FetchItemBodySection{Part: p, Specifier: imap.PartSpecifierText},
			&imap.FetchItemBodySection{Part: p, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject", "content-type"}},
		)
	}
	return specs
}

// partPaths lists the part numbers of a body structure, and a few that do not exist.
func partPaths(bs imap.BodyStructure, prefix []int, out *[][]int) {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for i, c := range b.Children {
			p := append(append([]int(nil), prefix...), i+1)
			*out = append(*out, p)
			partPaths(c, p, out)
		}
	case *imap.BodyStructureSinglePart:
		if b.MessageRFC822 != nil && len(prefix) < 6 {
			partPaths(b.MessageRFC822.BodyStructure, prefix, out)
			if _, ok := b.MessageRFC822.BodyStructure.(*imap.BodyStructureMultiPart); !ok {
				*out = append(*out, append(append([]int(nil), prefix...), 1))
			}
		}
	}
}

// sectionFile is a msgFile over a message written to a temporary file, as the store
// would hold it (lf: with bare LF line ends).
func sectionFile(t *testing.T, msg []byte, lf bool) *msgFile {
	t.Helper()
	data := msg
	if lf {
		data = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	}
	path := filepath.Join(t.TempDir(), "m")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tree, _, err := parseTree(f, false, pos{})
	if err != nil {
		t.Fatal(err)
	}
	return &msgFile{f: f, tree: tree, cmd: &fetchCmd{maxWork: 1 << 62, buf: make([]byte, 7)}}
}

// headerParses reports whether go-message reads the whole header of every entity: where
// it does not, imapserver's Extract functions answer empty sections (a refusal we do not
// copy: we serve the bytes).
func headerParses(msg []byte) bool {
	_, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	return err == nil
}

func readSection(t *testing.T, mf *msgFile, bs *imap.FetchItemBodySection, partial *imap.SectionPartial) []byte {
	t.Helper()
	src, ok, err := mf.section(bs)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return nil
	}
	total, err := mf.size(src)
	if err != nil {
		t.Fatal(err)
	}
	off, n := literalRange(total, partial)
	var buf bytes.Buffer
	if err := mf.write(&buf, src, off, n); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != n {
		t.Fatalf("section %v: size %d, wrote %d", bs, n, buf.Len())
	}
	return buf.Bytes()
}

func specString(bs *imap.FetchItemBodySection) string {
	return fmt.Sprintf("%v %s %v %v", bs.Part, bs.Specifier, bs.HeaderFields, bs.HeaderFieldsNot)
}

// checkSections compares every section of msg, from its file in CRLF and in bare-LF
// form, with imapserver's ExtractBodySection and the structure with its
// ExtractBodyStructure.
func checkSections(t *testing.T, name string, msg []byte, rnd *rand.Rand) {
	t.Helper()
	want := imapserver.ExtractBodyStructure(bytes.NewReader(msg))
	var paths [][]int
	partPaths(want, nil, &paths)
	paths = append(paths, []int{9}, []int{1, 9})
	parses := headerParses(msg)
	for _, lf := range []bool{false, true} {
		if lf && !bytes.Equal(mailheader.CRLF(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))), msg) {
			continue // CRs before line ends: no bare-LF file gives this message back
		}
		mf := sectionFile(t, msg, lf)
		if got := mf.tree.bodyStructure(); parses && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s (lf %v): BODYSTRUCTURE\n got %#v\nwant %#v", name, lf, got, want)
		}
		for _, bs := range sectionSpecs(paths) {
			got := readSection(t, mf, bs, nil)
			if bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 && !bytes.Equal(got, msg) {
				t.Fatalf("%s (lf %v): BODY[] is not the message", name, lf)
			}
			if parses {
				// imapserver answers nothing when its reader fails (a part that lacks its
				// closing boundary): the structure being equal, the bytes are ours.
				if exp := imapserver.ExtractBodySection(bytes.NewReader(msg), bs); !bytes.Equal(got, exp) && len(exp) > 0 && !(len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone) {
					t.Fatalf("%s (lf %v): section %s\n got %q\nwant %q", name, lf, specString(bs), trunc(got), trunc(exp))
				}
			}
			// Partials are slices of the whole section.
			for range 3 {
				p := &imap.SectionPartial{Offset: rnd.Int64N(int64(len(got)) + 3), Size: rnd.Int64N(int64(len(got)) + 3)}
				part := readSection(t, mf, bs, p)
				var exp []byte
				if p.Offset < int64(len(got)) {
					exp = got[p.Offset:min(int64(len(got)), p.Offset+p.Size)]
				}
				if !bytes.Equal(part, exp) {
					t.Fatalf("%s (lf %v): section %s partial %v: got %q want %q", name, lf, specString(bs), *p, trunc(part), trunc(exp))
				}
			}
		}
	}
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// TestSectionsMatchImapserver checks that sections served from the file by offsets are
// exactly what imapserver's ExtractBodySection (which read the whole message into memory
// for every section) answered, and the structure its ExtractBodyStructure, on crafted MIME
// and on the SpamAssassin corpus; and that files with bare LF line ends give the same
// bytes as their CRLF form.
func TestSectionsMatchImapserver(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i, m := range sectionMessages {
		if i == malformedPartHeader {
			continue // TestMalformedPartHeader
		}
		checkSections(t, fmt.Sprintf("crafted %d", i), []byte(m), rnd)
	}
	dir := testenv.Corpus(t)
	n := 0
	for _, sub := range []string{"test/ham", "test/spam"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*.eml"))
		for i, f := range files {
			if i%3 != 0 {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checkSections(t, filepath.Base(f), mailheader.CRLF(b), rnd)
			n++
		}
	}
	if n < 100 {
		t.Fatalf("only %d corpus messages", n)
	}
}

// malformedPartHeader is the crafted message whose first part's header runs into the
// next boundary: go-message stops reading the multipart there (imapserver saw no parts);
// the header ends at the boundary instead, as in Dovecot.
const malformedPartHeader = 14

func TestMalformedPartHeader(t *testing.T) {
	mf := sectionFile(t, []byte(sectionMessages[malformedPartHeader]), false)
	for spec, want := range map[*imap.FetchItemBodySection]string{
		{Part: []int{1}}: "",
		{Part: []int{1}, Specifier: imap.PartSpecifierMIME}: "Content-Type: text/plain\r\n",
		{Part: []int{2}}: "second",
		{Part: []int{3}}: "",
	} {
		if got := string(readSection(t, mf, spec, nil)); got != want {
			t.Fatalf("%s: %q, want %q", specString(spec), got, want)
		}
	}
}

// TestBinarySections: BINARY undoes the transfer encoding of the part (and of the whole
// message, after its header); BINARY.SIZE is its length; an unknown encoding is NO
// [UNKNOWN-CTE].
func TestBinarySections(t *testing.T) {
	msg := []byte(sectionMessages[4])
	mf := sectionFile(t, msg, false)
	for _, c := range []struct {
		part []int
		want string
	}{
		{[]int{1}, "first part"},
		{[]int{2}, "needle in binary"},
		{[]int{3}, "<b>caf\xc3\xa9</b> end"},
	} {
		src, ok, err := mf.binarySection(c.part)
		if err != nil || !ok {
			t.Fatalf("%v: %v %v", c.part, ok, err)
		}
		n, err := mf.size(src)
		if err != nil || n != int64(len(c.want)) {
			t.Fatalf("%v: size %d %v", c.part, n, err)
		}
		var buf bytes.Buffer
		if err := mf.write(&buf, src, 0, n); err != nil || buf.String() != c.want {
			t.Fatalf("%v: %q %v", c.part, buf.String(), err)
		}
		var part bytes.Buffer
		if err := mf.write(&part, src, 3, 4); err != nil || part.String() != c.want[3:7] {
			t.Fatalf("%v partial: %q %v", c.part, part.String(), err)
		}
	}
	mf = sectionFile(t, []byte("Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"), false)
	if _, _, err := mf.binarySection(nil); err == nil || !strings.Contains(err.Error(), "UNKNOWN-CTE") {
		t.Fatalf("unknown encoding: %v", err)
	}
	mf = sectionFile(t, []byte("Subject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"), true)
	src, _, _ := mf.binarySection(nil)
	var buf bytes.Buffer
	n, _ := mf.size(src)
	if err := mf.write(&buf, src, 0, n); err != nil || buf.String() != "Subject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\nhello" {
		t.Fatalf("whole message: %q %v", buf.String(), err)
	}
}

// TestParseBounded: nesting beyond maxPartDepth and parts beyond maxParts end the parse
// of structure (the rest is body), without recursion or memory growing with the input.
func TestParseBounded(t *testing.T) {
	var b strings.Builder
	for i := range maxPartDepth + 50 {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("\r\ndeepest\r\n")
	tree, _, err := parseTree(strings.NewReader(b.String()), false, pos{})
	if err != nil {
		t.Fatal(err)
	}
	depth := 0
	for p := tree.root; len(p.children) > 0; p = p.children[0] {
		depth++
	}
	if depth != maxPartDepth {
		t.Fatalf("depth %d", depth)
	}
	b.Reset()
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range maxParts + 100 {
		b.WriteString("--b\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	tree, _, err = parseTree(strings.NewReader(b.String()), false, pos{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tree.root.children); n != maxParts-1 {
		t.Fatalf("%d parts", n)
	}
	if tree.root.end.v != int64(b.Len()) {
		t.Fatalf("end %d of %d", tree.root.end.v, b.Len())
	}
	// A header field of many megabytes keeps only its start.
	big := "Subject: " + strings.Repeat("x", 4<<20) + "\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
	tree, _, err = parseTree(strings.NewReader(big), false, pos{})
	if err != nil || tree.mem > 1<<20 || tree.root.mediaType != "text/plain" {
		t.Fatalf("%v mem %d type %q", err, tree.mem, tree.root.mediaType)
	}
}

func TestCRLFReader(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\r\nc\n\n": "a\r\nb\r\nc\r\n\r\n",
		"\n":            "\r\n",
		"x\ry\r":        "x\ry\r",
		"":              "",
	} {
		got, err := io.ReadAll(&crlfReader{r: bufio.NewReader(strings.NewReader(in))})
		if err != nil || string(got) != want {
			t.Fatalf("%q: %q %v", in, got, err)
		}
	}
}

// FuzzSections checks on any input that every section's bytes are exactly as long as its
// announced size, that BODY[] is the message and HEADER and TEXT split it, and that a
// part's MIME header and body are a range of the message. (Where go-message reads the
// same structure, the sections are also imapserver's: TestSectionsMatchImapserver.)
func FuzzSections(f *testing.F) {
	for _, m := range sectionMessages {
		f.Add([]byte(m))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		msg = mailheader.CRLF(msg)
		mf := sectionFile(t, msg, false)
		var paths [][]int
		partPaths(mf.tree.bodyStructure(), nil, &paths)
		for _, bs := range sectionSpecs(append(paths, []int{2, 1})) {
			readSection(t, mf, bs, nil) // checks the size
		}
		if got := readSection(t, mf, &imap.FetchItemBodySection{}, nil); !bytes.Equal(got, msg) {
			t.Fatal("BODY[] is not the message")
		}
		hdr := readSection(t, mf, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader}, nil)
		text := readSection(t, mf, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText}, nil)
		if mf.tree.root.blank && !bytes.Equal(append(hdr, text...), msg) {
			t.Fatalf("HEADER %q + TEXT %q is not the message", hdr, text)
		}
		for _, p := range paths {
			mime := readSection(t, mf, &imap.FetchItemBodySection{Part: p, Specifier: imap.PartSpecifierMIME}, nil)
			body := readSection(t, mf, &imap.FetchItemBodySection{Part: p}, nil)
			node, _, _ := mf.tree.resolve(p)
			if node.blank && !bytes.Contains(msg, append(mime, body...)) {
				t.Fatalf("part %v: MIME %q + body %q not in the message", p, mime, body)
			}
		}
	})
}

// TestFetchSectionsOverIMAP fetches sections, BODYSTRUCTURE and BINARY of a nested MIME
// message through the server, from a CRLF file and from a bare-LF one, and compares them
// with what imapserver's Extract functions make of the message.
func TestFetchSectionsOverIMAP(t *testing.T) {
	e := start(t, Config{})
	msg := []byte(sectionMessages[6])
	e.deliver(t, "alice@example.org", string(msg))
	u, err := e.store.Open(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	u.Release()
	var root string
	filepath.Walk(e.store.Config().Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() && filepath.Base(p) == "Maildir" {
			root = p
		}
		return nil
	})
	lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if err := os.WriteFile(filepath.Join(root, "new", "1700000000.M1P1Q1.other"), lf, 0o600); err != nil {
		t.Fatal(err)
	}
	c := login(t, e, "alice@example.org", "secret pw", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sections := []*imap.FetchItemBodySection{
		{Peek: true},
		{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Content-Type"}},
		{Peek: true, Part: []int{1, 2}},
		{Peek: true, Part: []int{2}, Specifier: imap.PartSpecifierHeader},
		{Peek: true, Part: []int{2}, Specifier: imap.PartSpecifierMIME},
		{Peek: true, Part: []int{2, 1}, Partial: &imap.SectionPartial{Offset: 2, Size: 5}},
	}
	binary := &imap.FetchItemBinarySection{Part: []int{2, 2}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: sections,
		BinarySection: []*imap.FetchItemBinarySection{binary}, BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2, 2}}},
		RFC822Size: true,
	}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if m.RFC822Size != int64(len(msg)) {
			t.Fatalf("message %d: RFC822.SIZE %d", m.SeqNum, m.RFC822Size)
		}
		if got, want := plain(m.BodyStructure), plain(imapserver.ExtractBodyStructure(bytes.NewReader(msg))); !reflect.DeepEqual(got, want) {
			t.Fatalf("message %d: BODYSTRUCTURE\n got %v\nwant %v", m.SeqNum, got, want)
		}
		for _, bs := range sections {
			want := imapserver.ExtractBodySection(bytes.NewReader(msg), bs)
			if got := m.FindBodySection(bs); !bytes.Equal(got, want) {
				t.Fatalf("message %d section %s: %q, want %q", m.SeqNum, specString(bs), got, want)
			}
		}
		if got := string(m.FindBinarySection(binary)); got != "\x89PNG\r\n\x1a\n" {
			t.Fatalf("message %d BINARY[2.2]: %q", m.SeqNum, got)
		}
		if n, ok := m.FindBinarySectionSize([]int{2, 2}); !ok || n != 8 {
			t.Fatalf("message %d BINARY.SIZE[2.2]: %d", m.SeqNum, n)
		}
	}
}

// plain is v as JSON values as a body structure reads back from the wire: empty maps and
// lists nil (NIL for an empty parameter list), no encoding as 7bit, no Sender or Reply-To
// as the From (RFC 3501 §7.4.2).
func plain(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	json.Unmarshal(b, &out)
	var norm func(any) any
	norm = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				return nil
			}
			if e, ok := x["Encoding"]; ok && e == "" {
				x["Encoding"] = "7bit"
			}
			for _, k := range []string{"Sender", "ReplyTo"} {
				if e, ok := x[k]; ok && e == nil {
					x[k] = x["From"]
				}
			}
			for k, e := range x {
				x[k] = norm(e)
			}
		case []any:
			if len(x) == 0 {
				return nil
			}
			for i, e := range x {
				x[i] = norm(e)
			}
		}
		return v
	}
	return norm(out)
}
