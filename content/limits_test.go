package content

import (
	"fmt"
	"strings"
	"testing"
)

func hasError(m *Message, code string) bool {
	for _, e := range m.Errors {
		if strings.HasSuffix(e, ": "+code) {
			return true
		}
	}
	return false
}

func TestLimits(t *testing.T) {
	// A multipart nested 1000 deep.
	var deep strings.Builder
	deep.WriteString("Subject: deep\r\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("\r\nleaf\r\n")
	m, err := WalkBytes([]byte(deep.String()), Limits{})
	if err != nil || !m.Truncated || !hasError(m, "too_deep") || len(m.Parts) > DefaultLimits.MaxDepth+1 {
		t.Errorf("deep: %v parts=%d errors=%v", err, len(m.Parts), m.Errors)
	}

	// Ten thousand parts.
	var wide strings.Builder
	wide.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < 10000; i++ {
		wide.WriteString("--b\r\n\r\nx\r\n")
	}
	wide.WriteString("--b--\r\n")
	m, _ = WalkBytes([]byte(wide.String()), Limits{MaxParts: 100})
	if !hasError(m, "too_many_parts") || len(m.Parts) != 100 {
		t.Errorf("wide: parts=%d errors=%v", len(m.Parts), m.Errors)
	}

	// Decoded, text and URL limits.
	body := strings.Repeat("see http://a.example/"+strings.Repeat("x", 40)+" ", 1)
	var many strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&many, "http://h%d.example/ ", i)
	}
	m, _ = WalkBytes([]byte("Subject: x\r\n\r\n"+body+many.String()+strings.Repeat("y", 5000)), Limits{MaxTextSize: 1000, MaxURLs: 10, MaxDecodedSize: 2000})
	if !hasError(m, "decoded_limit") || !hasError(m, "text_limit") || !hasError(m, "url_limit") ||
		len(m.Text) > 1000 || len(m.URLs) != 10 {
		t.Errorf("text: %d bytes, %d urls, errors %v", len(m.Text), len(m.URLs), m.Errors)
	}

	// Archive entries and nesting.
	var entries []zipEntry
	for i := 0; i < 50; i++ {
		entries = append(entries, zipEntry{name: fmt.Sprintf("f%d.txt", i), data: []byte("x")})
	}
	nested := makeZip(zipEntry{name: "a.exe", data: peStub()})
	for i := 0; i < 6; i++ {
		nested = makeZip(zipEntry{name: fmt.Sprintf("level%d.zip", i), data: nested})
	}
	msg := mixed("zips",
		[2]string{"Content-Type: application/zip; name=\"many.zip\"\r\n", b64lines(makeZip(entries...))},
		[2]string{"Content-Type: application/zip; name=\"nested.zip\"\r\n", b64lines(nested)})
	m, _ = WalkBytes(msg, Limits{MaxArchiveEntries: 20, MaxArchiveDepth: 3})
	if !hasError(m, "archive_limit") {
		t.Errorf("archives: errors %v", m.Errors)
	}
	if n := len(m.Attachments); n > 2+20 {
		t.Errorf("%d attachment records past the entry limit", n)
	}
	m, _ = WalkBytes(msg, Limits{MaxArchiveDepth: 3})
	deepest := 0
	for _, a := range m.Attachments {
		if d := strings.Count(a.InArchive, "/") + 1; a.InArchive != "" && d > deepest {
			deepest = d
		}
	}
	if deepest > 3 {
		t.Errorf("archives opened %d deep", deepest)
	}

	if _, err := WalkBytes(make([]byte, 200), Limits{MaxSize: 100}); err == nil {
		t.Error("oversized message accepted")
	}
	if _, err := Walk(strings.NewReader(strings.Repeat("x", 200)), Limits{MaxSize: 100}); err == nil {
		t.Error("oversized stream accepted")
	}
}

func TestHeaderLimit(t *testing.T) {
	huge := "Subject: " + strings.Repeat("x", 100000) + "\r\n\t" + strings.Repeat("y", 100000) + "\r\nX-After: 1\r\n\r\nbody\r\n"
	m, _ := WalkBytes([]byte(huge), Limits{MaxHeaderSize: 1000})
	if !hasError(m, "header_too_long") || len(m.Header) == 0 || len(m.Header[0].Logical) > 1000 {
		t.Fatalf("errors %v, %d fields", m.Errors, len(m.Header))
	}
	if !strings.Contains(m.Text, "body") {
		t.Fatal("the body was lost after a long header")
	}
}

func TestHeaderLimitLongName(t *testing.T) {
	m, _ := WalkBytes([]byte("X-"+strings.Repeat("n", 5000)+": v\r\nSubject: s\r\n\r\nbody\r\n"), Limits{MaxHeaderSize: 100})
	if !hasError(m, "header_too_long") || !strings.Contains(m.Text, "body") {
		t.Fatalf("errors %v text %q", m.Errors, m.Text)
	}
}
