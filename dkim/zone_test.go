package dkim

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestZoneRecord parses what ZoneRecord prints as a zone-file record: every
// character-string fits in 255 bytes and together they are the record value again.
// cmd/portcullis's TestDKIMKeygenZone has BIND's named-checkzone read the printed record.
func TestZoneRecord(t *testing.T) {
	name, rsaTXT, err := GenerateKey(t.TempDir(), "example.org", "s1", AlgoRSA)
	if err != nil {
		t.Fatal(err)
	}
	_, edTXT, err := GenerateKey(t.TempDir(), "example.org", "s2", AlgoEd25519)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		txt     string
		strings int
	}{
		{rsaTXT, 3},                   // tags, 255 bytes of key, the rest
		{edTXT, 1},                    // short: one string on one line
		{strings.Repeat("x", 255), 1}, // exactly one character-string
		{strings.Repeat("x", 256), 2}, // one byte more: no "; p=", plain chunks
		{"v=DKIM1; p=" + strings.Repeat("k", 508), 3}, // tags, then two full strings of key
		{"v=DKIM1; p=" + strings.Repeat("k", 509), 4},
	} {
		rec := ZoneRecord(name+".", tc.txt)
		rr, err := dns.NewRR(rec)
		if err != nil {
			t.Fatalf("%q does not parse: %v", rec, err)
		}
		txt, ok := rr.(*dns.TXT)
		if !ok || txt.Hdr.Name != name+"." {
			t.Fatalf("%q parsed as %v", rec, rr)
		}
		if strings.Join(txt.Txt, "") != tc.txt || len(txt.Txt) != tc.strings {
			t.Errorf("%q: %d strings %q, want %d making %q", rec, len(txt.Txt), txt.Txt, tc.strings, tc.txt)
		}
		for _, s := range txt.Txt {
			if len(s) > maxCharString {
				t.Errorf("%q: a string of %d bytes", rec, len(s))
			}
		}
		if multi := strings.Contains(rec, "\n"); multi != (tc.strings > 1) || multi != strings.Contains(rec, "( ") {
			t.Errorf("%q: lines and parentheses do not match %d strings", rec, tc.strings)
		}
	}
}
