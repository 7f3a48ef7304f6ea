package migrate

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzMbox: any bytes split into messages whose spans lie inside the input, in order,
// and the header filter never fails or grows a message.
func FuzzMbox(f *testing.F) {
	f.Add([]byte("From a Mon Jan  2 15:04:05 2006\nStatus: RO\nX-Keywords: a b\n\nbody\n\nFrom b Mon Jan  2 15:04:05 2006\n\nx\n"))
	f.Add([]byte("From \r\nSubject: x\r\n X-Status: cont\r\n\r\n\r\nFrom \r\n"))
	f.Add([]byte("not an mbox"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		spans, dates, err := scanMbox(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(spans) != len(dates) {
			t.Fatalf("%d spans, %d dates", len(spans), len(dates))
		}
		last := int64(0)
		for _, sp := range spans {
			if sp.off < last || sp.end < sp.off || sp.end > int64(len(b)) {
				t.Fatalf("span %+v out of order or bounds (len %d)", sp, len(b))
			}
			last = sp.end
			var out bytes.Buffer
			if _, err := filterMbox(bytes.NewReader(b[sp.off:sp.end]), &out); err != nil {
				t.Fatal(err)
			}
			if int64(out.Len()) > sp.end-sp.off {
				t.Fatalf("filter grew the message")
			}
		}
	})
}

// FuzzMaildirMeta: dovecot-uidlist, dovecot-keywords and subscriptions files of any
// content are read without failing.
func FuzzMaildirMeta(f *testing.F) {
	f.Add("3 V1700000000 N8 Gabc\n3 P0042 :1000.M1P1.old\n5 :1001:2,S\n", "0 $MDNSent\n25 z\n26 bad\n", "V\t2\n\nA\tB\n")
	f.Add("1 123 5\n1 abc\n", "", "INBOX.Sent\n")
	f.Fuzz(func(t *testing.T, uidlist, keywords, subs string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "dovecot-uidlist"), []byte(uidlist), 0o600)
		os.WriteFile(filepath.Join(dir, "dovecot-keywords"), []byte(keywords), 0o600)
		os.WriteFile(filepath.Join(dir, "subscriptions"), []byte(subs), 0o600)
		readUIDList(dir)
		for c := range readKeywords(dir) {
			if c < 'a' || c > 'z' {
				t.Fatalf("keyword letter %q", c)
			}
		}
		(&MaildirSource{root: dir}).subscriptions()
	})
}

// FuzzMUTF7: decoding never panics and returns valid UTF-8 for valid input.
func FuzzMUTF7(f *testing.F) {
	f.Add("Entw&APw-rfe")
	f.Add("&ZeVnLIqe-")
	f.Add("a&-b&")
	f.Add("&AAA")
	f.Fuzz(func(t *testing.T, s string) {
		d := DecodeMUTF7(s)
		if utf8.ValidString(s) && !utf8.ValidString(d) && !strings.Contains(s, "&") {
			t.Fatalf("%q decoded to invalid %q", s, d)
		}
	})
}

// FuzzUsersCSV: any CSV is read or refused, never a panic.
func FuzzUsersCSV(f *testing.F) {
	f.Add("address,password,aliases\na@b,{PLAIN}x,c@d e@f\n")
	f.Add("password,address\n\"x\n")
	f.Fuzz(func(t *testing.T, s string) {
		ReadUsersCSV(io.LimitReader(strings.NewReader(s), 1<<16))
	})
}
