package bayes

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// attrURLsRef is the attribute parser attrURLs replaced (one attribute at a time,
// byte by byte), kept as the reference of its behaviour on any input.
func attrURLsRef(a []byte, onURL func([]byte)) {
	i, n := 0, len(a)
	for i < n {
		for i < n && (isSpace(a[i]) || a[i] == '/') {
			i++
		}
		ns := i
		for i < n && a[i] != '=' && !isSpace(a[i]) && a[i] != '>' {
			i++
		}
		name := a[ns:i]
		for i < n && isSpace(a[i]) {
			i++
		}
		if i >= n || a[i] != '=' {
			if i == ns {
				i++ // stray byte
			}
			continue
		}
		i++
		for i < n && isSpace(a[i]) {
			i++
		}
		var val []byte
		if i < n && (a[i] == '"' || a[i] == '\'') {
			q := a[i]
			e := bytes.IndexByte(a[i+1:], q)
			if e < 0 {
				val, i = a[i+1:], n
			} else {
				val, i = a[i+1:i+1+e], i+e+2
			}
		} else {
			vs := i
			for i < n && !isSpace(a[i]) {
				i++
			}
			val = a[vs:i]
		}
		switch len(name) {
		case 3, 4, 6, 10:
			if len(val) > 0 && (bytes.EqualFold(name, []byte("href")) || bytes.EqualFold(name, []byte("src")) ||
				bytes.EqualFold(name, []byte("action")) || bytes.EqualFold(name, []byte("background"))) {
				onURL(val)
			}
		}
	}
}

// TestAttrURLs compares attrURLs with the byte-by-byte reference on random tags built
// from attribute names, quotes, slashes, '=' and white space.
func TestAttrURLs(t *testing.T) {
	pieces := []string{"href", "HREF", "src", "action", "background", "alt", "x", "=", "= ", " =", "\"", "'",
		" ", "\t", "/", "http://a.example/", "v", "\"q=1\"", "a=b", "\n"}
	r := rand.New(rand.NewPCG(7, 8))
	found := 0
	for k := 0; k < 50000; k++ {
		var a []byte
		for m := r.IntN(12); m > 0; m-- {
			a = append(a, pieces[r.IntN(len(pieces))]...)
		}
		var got, want [][]byte
		h := htmlReducer{onURL: func(u []byte) { got = append(got, u) }}
		h.attrURLs(a)
		attrURLsRef(a, func(u []byte) { want = append(want, u) })
		found += len(want)
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("%q: got %q, want %q", a, got, want)
		}
	}
	if found < 1000 {
		t.Errorf("only %d URLs in the random tags: the test does not exercise the parser", found)
	}
}

// TestIndexFold compares indexFold with a naive search on random inputs.
func TestIndexFold(t *testing.T) {
	naive := func(b []byte, needle string) int {
		for i := 0; i+len(needle) <= len(b); i++ {
			if bytes.EqualFold(b[i:i+len(needle)], []byte(needle)) {
				return i
			}
		}
		return -1
	}
	r := rand.New(rand.NewPCG(9, 10))
	alphabet := []byte("<htmlHTMLbodyBODY/x ")
	for k := 0; k < 20000; k++ {
		b := make([]byte, r.IntN(30))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		for _, needle := range []string{"<html", "<body", "</script", "html", "", "<"} {
			if got, want := indexFold(b, needle), naive(b, needle); got != want {
				t.Fatalf("indexFold(%q, %q) = %d, want %d", b, needle, got, want)
			}
		}
	}
}
