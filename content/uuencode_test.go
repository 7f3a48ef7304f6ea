package content

import (
	"bytes"
	"strings"
	"testing"
)

// uuencode encodes data as uuencode(1) does.
func uuencode(name string, data []byte) string {
	var b strings.Builder
	b.WriteString("begin 644 " + name + "\n")
	enc := func(c byte) byte {
		if c == 0 {
			return '`'
		}
		return c + ' '
	}
	for len(data) > 0 {
		n := min(45, len(data))
		chunk := data[:n]
		data = data[n:]
		b.WriteByte(enc(byte(n)))
		for i := 0; i < n; i += 3 {
			var t [3]byte
			copy(t[:], chunk[i:min(i+3, n)])
			b.WriteByte(enc(t[0] >> 2))
			b.WriteByte(enc((t[0]<<4 | t[1]>>4) & 0x3F))
			b.WriteByte(enc((t[1]<<2 | t[2]>>6) & 0x3F))
			b.WriteByte(enc(t[2] & 0x3F))
		}
		b.WriteByte('\n')
	}
	b.WriteString("`\nend\n")
	return b.String()
}

func TestUUEncoded(t *testing.T) {
	pe := peStub()
	msg := "Subject: old school\r\n\r\nHere it is:\r\n\r\n" + strings.ReplaceAll(uuencode("setup.exe", pe), "\n", "\r\n") + "bye\r\n"
	m, err := WalkBytes([]byte(msg), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != 1 {
		t.Fatalf("%d attachments", len(m.Attachments))
	}
	a := m.Attachments[0]
	if a.Name != "setup.exe" || !a.Executable || a.ExecKind != "pe" || !bytes.Equal(a.Data, pe) {
		t.Fatalf("got %+v", a)
	}
	// As a transfer encoding.
	msg = "Content-Type: application/octet-stream; name=x.bin\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" + uuencode("x.bin", pe)
	m, _ = WalkBytes([]byte(msg), Limits{})
	if len(m.Attachments) != 1 || !m.Attachments[0].Executable || m.Malformed {
		t.Fatalf("x-uuencode: %+v %v", m.Attachments, m.Errors)
	}
	// Truncated block.
	m, _ = WalkBytes([]byte("Subject: x\r\n\r\nbegin 644 a.scr\r\nM5%@\r\n"), Limits{})
	if len(m.Attachments) != 1 || m.Attachments[0].Name != "a.scr" {
		t.Fatalf("truncated: %+v", m.Attachments)
	}
}
