package content

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestNamesAgreeWithGoMessage decodes every attachment name of the golden corpus and
// of the SpamAssassin corpus with go-message as well: where go-message decides a name,
// it must be among ours; where it returns none although the part names a file (the
// duplicated-parameter case), ours must be marked suspicious.
func TestNamesAgreeWithGoMessage(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.eml")
	// The corpus when present.
	if dir := testenv.CorpusIfPresent(t); dir != "" {
		c, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*.eml"))
		files = append(files, c...)
	}
	compared, flagged := 0, 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := WalkBytes(raw, Limits{})
		byPath := map[string]*Attachment{}
		for _, a := range m.Attachments {
			if a.InArchive == "" && a.Disposition != "uuencode" {
				byPath[a.Path] = a
			}
		}
		for _, p := range m.Parts {
			a := byPath[p.Path]
			h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(p.Buf[p.Start:p.BodyStart])))
			if err != nil {
				continue // go-message rejects the header; nothing to compare
			}
			ah := mail.AttachmentHeader{Header: message.Header{Header: h}}
			name, err := ah.Filename()
			if err != nil {
				continue
			}
			if name == "" {
				if _, params, _ := ah.ContentDisposition(); params == nil && a != nil && len(a.Names) > 0 {
					// go-message lost a name that we found: it must be suspicious.
					if !a.SuspiciousName {
						t.Errorf("%s part %s: go-message sees no name, we see %q and call it harmless", f, p.Path, a.Names)
					}
					flagged++
				}
				continue
			}
			if a == nil {
				t.Errorf("%s part %s: go-message finds the name %q, we found no attachment", f, p.Path, name)
				continue
			}
			want := analyzeName(name).clean
			if !containsString(a.Names, want) {
				t.Errorf("%s part %s: go-message decodes %q, we have %q", f, p.Path, want, a.Names)
			}
			compared++
		}
	}
	t.Logf("%d names agree, %d names only we found (all suspicious)", compared, flagged)
	if compared < 10 || flagged < 1 {
		t.Errorf("too little compared: %d agreeing, %d flagged", compared, flagged)
	}
}
