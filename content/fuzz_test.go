package content

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"unicode/utf8"

	"github.com/portcullis-mail/portcullis/content/contenttest"
)

// fuzzLimits are small so that the fuzzer reaches every limit.
var fuzzLimits = Limits{MaxParts: 50, MaxDepth: 5, MaxHeaderSize: 300, MaxDecodedSize: 1 << 20,
	MaxTextSize: 4096, MaxURLs: 20, MaxArchiveEntries: 20, MaxArchiveDepth: 2, MaxUncompressedSize: 1 << 20}

func walkSeeds() [][]byte {
	var out [][]byte
	all := samples()
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if len(all[n]) < 20000 {
			out = append(out, all[n])
		}
	}
	for _, f := range []string{"testdata/broken-mime.eml", "testdata/html-urls.eml", "testdata/rfc822.eml"} {
		b, _ := os.ReadFile(f)
		out = append(out, b)
	}
	out = append(out, []byte("Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=a\n\n--a\n--a--\n"),
		[]byte("Subject: x\n\nbody http://x.example/ www.y.example"), []byte(""), []byte("\n\n"),
		[]byte("Subject: uu\n\n"+uuencode("setup.exe", peStub()[:100])))
	return out
}

func FuzzWalk(f *testing.F) {
	for _, s := range walkSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := WalkBytes(raw, fuzzLimits)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Parts) > fuzzLimits.MaxParts {
			t.Fatalf("%d parts over the limit", len(m.Parts))
		}
		for _, p := range m.Parts {
			if p.Start < 0 || p.Start > p.BodyStart || p.BodyStart > p.End || p.End > len(p.Buf) {
				t.Fatalf("part %q: bad offsets %d %d %d of %d", p.Path, p.Start, p.BodyStart, p.End, len(p.Buf))
			}
			if p.InRaw && len(p.Buf) != len(raw) {
				t.Fatalf("part %q claims to be in raw", p.Path)
			}
		}
		if len(m.Text) > int(fuzzLimits.MaxTextSize) || !utf8.ValidString(m.Text) {
			t.Fatalf("text of %d bytes, valid UTF-8 %v", len(m.Text), utf8.ValidString(m.Text))
		}
		if len(m.URLs) > fuzzLimits.MaxURLs {
			t.Fatal("too many URLs")
		}
		_ = Facts(m)
	})
}

func filenameSeeds() []string {
	return []string{
		`attachment; filename="a.exe"`,
		`attachment; filename="a.txt"; filename="b.exe"`,
		`attachment; filename*=UTF-8''%E2%80%AEfdp.exe`,
		`attachment; filename*0*=utf-8''a%20; filename*1="b"; filename*2*=%41.exe`,
		`attachment; filename*0=a; filename*2=c`,
		`attachment; filename*=iso-8859-1'de'caf%E9.pdf; filename="cafe.pdf"`,
		`attachment; filename="=?UTF-8?B?aW52b2ljZS5wZGY=?="`,
		`attachment; filename="=?x-bogus?Q?a?="`,
		`attachment; filename=unquoted name.exe ; size=3`,
		`attachment; filename="unterminated`,
		`inline; (comment) filename = "x\"y.pdf" (c)`,
		"attachment; filename=\"scan\u200b.pdf\u2024exe\"",
	}
}

func FuzzFilename(f *testing.F) {
	for _, s := range filenameSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		_, params, _ := parseParamField(field)
		if len(params) > 64 {
			t.Fatal("too many params")
		}
		names, _ := nameValues(params, "filename")
		for _, n := range names {
			if !utf8.ValidString(n) {
				t.Fatalf("name %q is not UTF-8", n)
			}
			ni := analyzeName(n)
			if !utf8.ValidString(ni.clean) || len(ni.exts) > 16 {
				t.Fatalf("bad analysis of %q: %+v", n, ni)
			}
		}
	})
}

func archiveSeeds() [][]byte {
	pe := peStub()
	return [][]byte{
		makeZip(zipEntry{name: "readme.exe", data: pe}),
		makeZip(zipEntry{name: "in.zip", data: makeZip(zipEntry{name: "x.scr", data: pe})}, zipEntry{name: "e", data: []byte("x"), encrypted: true}),
		makeTarGz("a/b.exe", pe),
		[]byte("PK\x03\x04garbage"), []byte("\x1f\x8b\x08garbage"),
		[]byte("BZh91AY&SY\x00\x00garbage"),
		contenttest.GzipZeros("z", 2*contenttest.MiB),
		contenttest.ZipZeros("z", 2*contenttest.MiB),
		contenttest.Bzip2Zeros(2 * contenttest.MiB),
		contenttest.TarGzZeros("z", 2*contenttest.MiB),
		contenttest.ZipLevels(3, contenttest.Entry{Name: "a.exe", Data: pe[:64]}),
	}
}

func FuzzArchive(f *testing.F) {
	for _, s := range archiveSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kind := range []string{"zip", "gzip", "bzip2", "tar"} {
			w := &walker{lim: fuzzLimits.withDefaults(), msg: &Message{}}
			a := &Attachment{Name: "x." + kind}
			w.listArchive(a, data, kind, 1, nil)
			if len(w.msg.Attachments) > fuzzLimits.MaxArchiveEntries+fuzzLimits.MaxArchiveDepth+1 {
				t.Fatalf("%s: %d entries over the limit", kind, len(w.msg.Attachments))
			}
			// A bzip2 block is charged whole before it is decoded, so the count may pass
			// the budget by one block.
			if w.uncompressed > int64(fuzzLimits.MaxUncompressedSize)+900_000 {
				t.Fatalf("%s: decompressed %d bytes over the limit", kind, w.uncompressed)
			}
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpora under testdata/fuzz with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	write := func(target string, vals []string) {
		dir := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(dir, 0o755)
		for i, v := range vals {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte("go test fuzz v1\n"+v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var w, a, n []string
	for _, s := range walkSeeds() {
		w = append(w, fmt.Sprintf("[]byte(%q)", s))
	}
	for _, s := range archiveSeeds() {
		a = append(a, fmt.Sprintf("[]byte(%q)", s))
	}
	for _, s := range filenameSeeds() {
		n = append(n, fmt.Sprintf("string(%q)", s))
	}
	write("FuzzWalk", w)
	write("FuzzArchive", a)
	write("FuzzFilename", n)
}
