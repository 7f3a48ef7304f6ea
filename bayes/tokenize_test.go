package bayes

import (
	"bytes"
	"encoding/binary"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message/charset"
)

var update = flag.Bool("update", false, "rewrite the golden token files")

// TestTokensGolden compares the tokens of testdata/*.eml with testdata/*.tokens.
func TestTokensGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.eml")
	if len(files) == 0 {
		t.Fatal("no testdata/*.eml")
	}
	tok := NewTokenizer(DefaultTokenizerConfig())
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(tok.Tokens(raw), "\n") + "\n"
		golden := strings.TrimSuffix(f, ".eml") + ".tokens"
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s: tokens differ from %s (run go test -update and review the diff)\ngot:\n%s", f, golden, got)
		}
	}
}

// TestTokensFeatures checks the features the golden files show, by name, so that a
// careless -update cannot hide a regression.
func TestTokensFeatures(t *testing.T) {
	tok := NewTokenizer(DefaultTokenizerConfig())
	raw, _ := os.ReadFile("testdata/multipart.eml")
	toks := tok.Tokens(raw)
	for _, want := range []string{
		"subject:gréat",                                          // RFC 2047, charset converted
		"café",                                                   // quoted-printable, ISO-8859-1 to UTF-8
		"slashed",                                                // soft line break removed
		"viagra",                                                 // inline tags removed without a space
		"url:ip", "url:port", "url:buy", "url:php", "proto:http", // URL pieces
		"ct:application/octet-stream", "fname:exe", "cte:base64",
		"from:@spam.example", "from:deals@spam.example",
	} {
		if !slices.Contains(toks, want) {
			t.Errorf("missing token %q in %q", want, toks)
		}
	}
	for _, bad := range []string{"hidden", "secret", "word\";", "tvqqaamaaaaeaaaa"} {
		if slices.Contains(toks, bad) {
			t.Errorf("unexpected token %q (script, comment or attachment content)", bad)
		}
	}
	raw, _ = os.ReadFile("testdata/plain.eml")
	toks = tok.Tokens(raw)
	for _, want := range []string{"lunch", "friday?", "url:www.example.com", "url:example.com", "url:menu",
		"skip:s3", "skip:p1", "quoted", "email:@example.com", "rcvd:192.0.2", "rcvd:mail.example.org",
		"subject:lunch", "x-mailer:mutt"} {
		if !slices.Contains(toks, want) {
			t.Errorf("missing token %q in %q", want, toks)
		}
	}
}

// TestHashesMatchTokens checks that the hashed path and the string path agree.
func TestHashesMatchTokens(t *testing.T) {
	tok := NewTokenizer(DefaultTokenizerConfig())
	for _, f := range []string{"testdata/plain.eml", "testdata/multipart.eml"} {
		raw, _ := os.ReadFile(f)
		var want []uint64
		for _, s := range tok.Tokens(raw) {
			want = append(want, HashToken(s))
		}
		got := tok.Hashes(nil, raw)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %d hashes, %d tokens", f, len(got), len(want))
		}
	}
}

func TestTokenizerHostile(t *testing.T) {
	tok := NewTokenizer(DefaultTokenizerConfig())
	cases := []string{
		"",
		"no header at all",
		"Subject: x\n",
		"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n--\n",
		"Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=a\n\n--a\n",
		"Content-Type: text/html\n\n<a href=\"http://x\n<<<>>>&#99999999999;&#x;&;<script>",
		"Content-Type: text/plain; charset=bogus-charset\nContent-Transfer-Encoding: base64\n\n!!!@@@",
		"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n",
		strings.Repeat("Content-Type: multipart/mixed; boundary=b\n\n--b\n", 100),
	}
	for _, c := range cases {
		tok.Hashes(nil, []byte(c))
		tok.Tokens([]byte(c))
	}
}

func FuzzTokenize(f *testing.F) {
	for _, p := range []string{"testdata/plain.eml", "testdata/multipart.eml"} {
		raw, _ := os.ReadFile(p)
		f.Add(raw)
	}
	f.Add([]byte("Content-Type: text/html\n\n<a href=x>&amp;&#65;</a>"))
	tok := NewTokenizer(DefaultTokenizerConfig())
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := tok.Hashes(nil, raw)
		s := tok.Tokens(raw)
		if len(h) != len(s) {
			// distinct strings may collide in 64 bits only with negligible odds
			t.Fatalf("%d hashes for %d tokens", len(h), len(s))
		}
	})
}

func BenchmarkTokenize(b *testing.B) {
	raw, _ := os.ReadFile("testdata/multipart.eml")
	plain, _ := os.ReadFile("testdata/plain.eml")
	tok := NewTokenizer(DefaultTokenizerConfig())
	var dst []uint64
	b.SetBytes(int64(len(raw) + len(plain)))
	for b.Loop() {
		dst = tok.Hashes(dst[:0], raw)
		dst = tok.Hashes(dst[:0], plain)
	}
}

// TestScanWord compares the SWAR word scanner with a byte-at-a-time one.
func TestScanWord(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab:@ \t\n\x7f\x80\xffZ.,x\x00\x20\x21")
	for n := 0; n < 20000; n++ {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		start := 0
		if len(b) > 0 {
			start = r.IntN(len(b))
		}
		wantEnd, wantSpec := start, false
		for wantEnd < len(b) && b[wantEnd] > ' ' && b[wantEnd] != 0x7f {
			wantSpec = wantSpec || b[wantEnd] == ':' || b[wantEnd] == '@'
			wantEnd++
		}
		end, spec := scanWord(b, start)
		if end != wantEnd || spec != wantSpec {
			t.Fatalf("scanWord(%q, %d) = %d, %v; want %d, %v", b, start, end, spec, wantEnd, wantSpec)
		}
	}
}

// TestLatin1Fast checks the built-in ISO-8859-1/windows-1252 conversion against
// go-message/charset (x/text) for every byte value.
func TestLatin1Fast(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	for _, cs := range []string{"iso-8859-1", "windows-1252"} {
		got, _ := toUTF8(all, []byte(cs), nil)
		r, err := charset.Reader(cs, bytes.NewReader(all))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(r)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %q\nwant %q", cs, got, want)
		}
	}
}

// TestHashShort checks that hashing a short word from a loaded register gives the
// stored token hash (hashWord), for every length and random bytes.
func TestHashShort(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for k := 0; k < 20000; k++ {
		var b [8]byte
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		x := binary.LittleEndian.Uint64(b[:])
		for n := 1; n <= 7; n++ {
			if got, want := hashShort(x, n), hashWord(b[:n]); got != want {
				t.Fatalf("hashShort(%q, %d) = %x, want %x", b, n, got, want)
			}
		}
	}
}

// TestHashesMatchTokensCorpus checks the same on a sample of the SpamAssassin corpus.
func TestHashesMatchTokensCorpus(t *testing.T) {
	d := corpusDir(t)
	var msgs [][]byte
	for _, s := range []string{"train/spam", "train/ham"} {
		all := readDir(t, filepath.Join(d, s))
		for i := 0; i < len(all); i += 25 {
			msgs = append(msgs, all[i])
		}
	}
	tok := NewTokenizer(DefaultTokenizerConfig())
	for i, raw := range msgs {
		var want []uint64
		for _, s := range tok.Tokens(raw) {
			want = append(want, HashToken(s))
		}
		got := tok.Hashes(nil, raw)
		slices.Sort(want)
		want = slices.Compact(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("message %d: %d hashes, %d tokens", i, len(got), len(want))
		}
	}
}

// TestHashesHeader checks that the header tokens come first and are counted: the first
// header hashes are those of header-field tokens, the rest are not.
func TestHashesHeader(t *testing.T) {
	tok := NewTokenizer(DefaultTokenizerConfig())
	headerPrefix := map[string]bool{"h": true, "rcvd": true}
	for _, h := range headerFields {
		headerPrefix[h] = true
	}
	for _, f := range []string{"testdata/plain.eml", "testdata/multipart.eml"} {
		raw, _ := os.ReadFile(f)
		isHeader := map[uint64]bool{}
		for _, s := range tok.Tokens(raw) {
			p, _, _ := strings.Cut(s, ":")
			isHeader[HashToken(s)] = headerPrefix[p] || strings.HasPrefix(s, "shape:mid:")
		}
		hs, n := tok.HashesHeader(nil, raw)
		if n == 0 || n >= len(hs) {
			t.Fatalf("%s: %d header tokens of %d", f, n, len(hs))
		}
		for i, h := range hs {
			if isHeader[h] != (i < n) {
				t.Errorf("%s: token %d (header %v) on the wrong side of %d", f, i, isHeader[h], n)
			}
		}
	}
}

// TestFingerprint: the fingerprint is the one tokenizer version 6 recorded with its
// default settings, so that the stores it trained stay valid. A change of the tokens
// needs a new one (and says so: stores must be retrained).
func TestFingerprint(t *testing.T) {
	if got, want := Fingerprint(), "ace7d75dd979c5ff"; got != want {
		t.Errorf("Fingerprint() = %s, want %s", got, want)
	}
}

// TestMalformedMarkupHidesNothing checks that text after markup that is never closed
// (a comment, a style or script element, a multipart boundary that never occurs) is
// still tokenized, as spamware's "<!--#rotate>" or a mistyped boundary would
// otherwise hide a message's whole text from the scorer; closed ones still hide theirs.
func TestMalformedMarkupHidesNothing(t *testing.T) {
	tok := NewTokenizer(DefaultTokenizerConfig())
	for name, c := range map[string]struct {
		raw        string
		want, hide []string
	}{
		"comment": {"Content-Type: text/html\n\n<p><!-- gone -->attract <!--#rotate>pheromones",
			[]string{"pheromones", "attract"}, []string{"gone", "#rotate"}},
		"style": {"Content-Type: text/html\n\n<style>weapon <b>instantly</b>", []string{"weapon", "instantly"}, nil},
		"script": {"Content-Type: text/html\n\n<script>hidden</script>shown <script>unclosed",
			[]string{"shown", "unclosed"}, []string{"hidden"}},
		"boundary": {"Content-Type: multipart/alternative; boundary=\"=Multipart Boundary 07\"\n\n" +
			"--= Multipart Boundary 07\nContent-Type: text/plain\n\nprofessional website\n--= Multipart Boundary 07--\n",
			[]string{"professional", "website", "mime:nodelim"}, nil},
	} {
		toks := tok.Tokens([]byte(c.raw))
		for _, w := range c.want {
			if !slices.Contains(toks, w) {
				t.Errorf("%s: no %q in %q", name, w, toks)
			}
		}
		for _, w := range c.hide {
			if slices.Contains(toks, w) {
				t.Errorf("%s: %q should stay hidden: %q", name, w, toks)
			}
		}
		if hs, _ := tok.HashesHeader(nil, []byte(c.raw)); len(hs) != len(toks) {
			t.Errorf("%s: %d hashes for %d tokens", name, len(hs), len(toks))
		}
	}
	// a well-formed multipart has no mime:nodelim
	raw, _ := os.ReadFile("testdata/multipart.eml")
	if slices.Contains(tok.Tokens(raw), "mime:nodelim") {
		t.Error("mime:nodelim in a well-formed multipart")
	}
}

// TestShapeCase checks that shapes differing only in letter case ("A", a run with a
// capital, against "a") are different tokens also when hashed (the hash of the
// other tokens folds case; fuzzing found two Message-ID shapes sharing one hash).
func TestShapeCase(t *testing.T) {
	tok := NewTokenizer(DefaultTokenizerConfig())
	a, _ := tok.HashesHeader(nil, []byte("Message-ID: <A0@A.A>\n\n"))
	b, _ := tok.HashesHeader(nil, []byte("Message-ID: <A0@A.a>\n\n"))
	ha, hb := HashToken("shape:mid:<A9@A.A>"), HashToken("shape:mid:<A9@A.a>")
	if ha == hb || !slices.Contains(a, ha) || !slices.Contains(b, hb) || slices.Contains(a, hb) {
		t.Errorf("shape hashes: %x %x in %x and %x", ha, hb, a, b)
	}
}
