package inflate

import (
	"bytes"
	"compress/flate"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// zlibPieces is what Python's zlib (the library mbsync and Dovecot use) wrote for each
// piece of text: compressobj(6, DEFLATED, -15), each piece flushed with Z_PARTIAL_FLUSH
// (mbsync's flush), but the third with Z_SYNC_FLUSH. The second is a dynamic block.
var zlibPieces = []struct{ text, hex string }{
	{"a1 NOOP\r\n", "4a3454f0f3f70fe0e50208"},
	{"a2 UID STORE 2 +FLAGS.SILENT (\\Flagged \\Seen)\r\na3 UID STORE 3 +FLAGS.SILENT (\\Flagged \\Seen)\r\na4 UID STORE 4 +FLAGS.SILENT (\\Flagged \\Seen)\r\na5 UID STORE 5 +FLAGS.SILENT (\\Flagged \\Seen)\r\na6 UID STORE 6 +FLAGS.SILENT (\\Flagged \\Seen)\r\na7 UID STORE 7 +FLAGS.SILENT (\\Flagged \\Seen)\r\na8 UID STORE 8 +FLAGS.SILENT (\\Flagged \\Seen)\r\na9 UID STORE 9 +FLAGS.SILENT (\\Flagged \\Seen)\r\na10 UID STORE 10 +FLAGS.SILENT (\\Flagged \\Seen)\r\na11 UID STORE 11 +FLAGS.SILENT (\\Flagged \\Seen)\r\na12 APPEND \"INBOX\" {82+}\r\nFrom: alice@example.org\r\nSubject: written offline\r\nX-TUID: K+d8UHo3XGYR\r\n\r\nhello\r\n\r\n", "c0d81cb42008046118be2fec7f183a1552a49699a78ab4a4b0680d0cba584d666c6e885110fdf7ec36b7ed361f3c2f935ab00da720e2d5c6070b8c60399e898e08977e1443731fc834cbf0047b8158b46a6e136eeb798ff09e9ef709efebb943b8a3e703c2077aee12eeeaf990f0a19e9b5de2eba10f4c1a987f04168cd76b3f9a42238c26aba4016fd7323e9c05a5ba7990cafc88237ca5b7bbc48e2a33cec4e370c563e5c1b3ccab0a0b50e7b3cc0be42c69c7f5730f16c6c9ddce959dcc761bce38bba094ea777c05"},
	{"a13 UID FETCH 3 (BODY.PEEK[])\r\n", "50a2212465b8b986387b0053868693bf4ba45e80abab77742cd03100000000ffff"},
	{"a14 LOGOUT\r\n", "4a343451f0f177f70f0de1e50208"},
}

// errWouldBlock stands for a connection with nothing more to read yet.
var errWouldBlock = errors.New("would block")

// pending is the connection's side: the bytes sent so far, then errWouldBlock.
type pending struct{ b []byte }

func (p *pending) ReadByte() (byte, error) {
	if len(p.b) == 0 {
		return 0, errWouldBlock
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c, nil
}

// Each flushed piece is decoded whole from the bytes sent up to its flush, before the
// reader asks for a byte more: a Z_PARTIAL_FLUSH sends only the whole bytes of the empty
// fixed block that follows the data, so a decoder that must see that block (Go's
// compress/flate, to return the data) or ten bits past the end of a dynamic block
// (klauspost/compress) stalled mbsync until its timeout.
func TestFlushedPiecesDecodeWhole(t *testing.T) {
	var sent []byte
	var want string
	for i, p := range zlibPieces {
		b, err := hex.DecodeString(p.hex)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, b...)
		want += p.text
		z := NewReader(&pending{b: bytes.Clone(sent)})
		var got []byte
		buf := make([]byte, 100) // smaller than a piece: returns when full, too
		for {
			n, err := z.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				if !errors.Is(err, errWouldBlock) {
					t.Fatalf("piece %d: %v", i, err)
				}
				break
			}
			if n == 0 {
				t.Fatalf("piece %d: Read returned 0, nil", i)
			}
		}
		if string(got) != want {
			t.Fatalf("piece %d: decoded %q before blocking, want %q", i, got, want)
		}
	}
}

// Streams compress/flate writes, with sync flushes and at every level, decode to what
// was written, through Read buffers of any size.
func TestRoundTrip(t *testing.T) {
	text := []byte(strings.Repeat("a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject)])\r\n", 2000))
	for i := range text {
		if i%97 == 0 {
			text[i] = byte(i * 7) // some bytes that are not text, distances of all kinds
		}
	}
	for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, level)
		w.Write(text[:1000])
		w.Flush()
		w.Write(text[1000:])
		w.Close()
		for _, size := range []int{1, 7, 4096, 1 << 20} {
			got, err := readAll(NewReader(bytes.NewReader(b.Bytes())), size)
			if err != nil || !bytes.Equal(got, text) {
				t.Fatalf("level %d, buffer %d: %d bytes, %v", level, size, len(got), err)
			}
		}
	}
}

func readAll(r io.Reader, size int) ([]byte, error) {
	var out []byte
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// Corrupt streams are errors that wrap ErrCorrupt (or ErrUnexpectedEOF when cut short).
func TestCorrupt(t *testing.T) {
	for name, in := range map[string][]byte{
		"block type 3":          {0x07},
		"stored length":         {0x01, 0x05, 0x00, 0x00, 0x00},
		"distance too far":      {0x63, 0x00, 0x42, 0x00}, // fixed block: copy before any output
		"cut in a stored block": {0x01, 0x05, 0x00, 0xfa, 0xff, 'a'},
	} {
		_, err := readAll(NewReader(bytes.NewReader(in)), 64)
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzInflate checks the decoder against compress/flate on any input: both decode the
// same bytes when either reaches the end of the stream without an error; output never
// exceeds what DEFLATE can express (about 1032 bytes per input byte: a bomb is bounded);
// and a stream compress/flate writes from the input round-trips.
func FuzzInflate(f *testing.F) {
	for _, p := range zlibPieces {
		b, _ := hex.DecodeString(p.hex)
		f.Add(b)
	}
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	w.Write(make([]byte, 1<<20)) // a bomb: 1 MiB of zeros
	w.Close()
	f.Add(b.Bytes())
	f.Add([]byte{0x07})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := readAll(NewReader(bytes.NewReader(in)), 4096)
		if len(got) > 1032*len(in)+1024 {
			t.Fatalf("%d bytes from %d", len(got), len(in))
		}
		want, werr := io.ReadAll(flate.NewReader(bytes.NewReader(in)))
		if err == nil && werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("decoded %q, compress/flate %q", got, want)
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("error %v, compress/flate's %v", err, werr)
		}
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, flate.BestSpeed)
		w.Write(in)
		w.Flush()
		w.Write(in)
		w.Close()
		rt, err := readAll(NewReader(&b), 100)
		if err != nil || !bytes.Equal(rt, append(bytes.Clone(in), in...)) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
