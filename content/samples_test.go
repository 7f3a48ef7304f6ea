package content

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// The worm-like samples of the golden corpus are built here from harmless bytes: a PE
// "executable" is a 512-byte MZ header whose e_lfanew points at a "PE\0\0" signature
// and nothing else, an ELF or Mach-O file is its magic number and padding. None of them
// runs.

func peStub() []byte {
	b := make([]byte, 512)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3C:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	copy(b[0x100:], "harmless test stub, not a program")
	return b
}

func padded(magic string) []byte {
	b := make([]byte, 256)
	copy(b, magic)
	return b
}

// oleStub is an OLE2 header followed by a directory entry name _VBA_PROJECT in UTF-16.
func oleStub(macro bool) []byte {
	b := make([]byte, 1024)
	copy(b, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1")
	name := "WordDocument"
	if macro {
		name = "_VBA_PROJECT"
	}
	for i, c := range name {
		b[512+2*i] = byte(c)
	}
	return b
}

type zipEntry struct {
	name      string
	data      []byte
	encrypted bool
}

func makeZip(entries ...zipEntry) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.encrypted {
			h.Flags |= 0x1
			h.Method = zip.Store
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			panic(err)
		}
		w.Write(e.data)
	}
	zw.Close()
	return buf.Bytes()
}

func makeTarGz(name string, data []byte) []byte {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	gw.Write(tb.Bytes())
	gw.Close()
	return gb.Bytes()
}

func b64lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}

const sampleHeader = "From: Sender <sender@example.org>\r\nTo: rcpt@example.com\r\n" +
	"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <sample@example.org>\r\nMIME-Version: 1.0\r\n"

// mixed builds a multipart/mixed message with a text part and the given attachments,
// each "header lines\r\n" plus a base64 body.
func mixed(subject string, atts ...[2]string) []byte {
	var b strings.Builder
	b.WriteString(sampleHeader)
	b.WriteString("Subject: " + subject + "\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"XX-boundary\"\r\n\r\n")
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	b.WriteString("--XX-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attachment.\r\n")
	for _, a := range atts {
		b.WriteString("--XX-boundary\r\n" + a[0] + "Content-Transfer-Encoding: base64\r\n\r\n" + a[1])
	}
	b.WriteString("--XX-boundary--\r\n")
	return []byte(b.String())
}

// samples returns the generated members of the golden corpus by file name.
func samples() map[string][]byte {
	pe := peStub()
	bomb := make([]byte, 8<<20)
	return map[string][]byte{
		"worm-pif.eml": mixed("your details",
			[2]string{"Content-Type: application/octet-stream; name=\"document.pif\"\r\nContent-Disposition: attachment; filename=\"document.pif\"\r\n", b64lines(pe)}),
		"worm-zip.eml": mixed("Re: hi",
			[2]string{"Content-Type: application/zip; name=\"readme.zip\"\r\nContent-Disposition: attachment; filename=\"readme.zip\"\r\n",
				b64lines(makeZip(zipEntry{name: "readme.exe", data: pe}, zipEntry{name: "readme.txt", data: []byte("hello")}))}),
		"worm-double-ext.eml": mixed("Photo",
			[2]string{"Content-Type: image/jpeg; name=\"photo.jpg.scr\"\r\nContent-Disposition: attachment; filename=\"photo.jpg.scr\"\r\n", b64lines(pe)}),
		"worm-rfc2231.eml": mixed("Rechnung",
			[2]string{"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename*0*=utf-8''Rechnung%20;\r\n filename*1=\"2026\";\r\n filename*2*=%E2%80%AEfdp.exe\r\n", b64lines(pe)}),
		"worm-dup-filename.eml": mixed("Invoice",
			[2]string{"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.txt\"; filename=\"invoice.exe\"\r\n", b64lines(pe)}),
		"nested-zip.eml": mixed("Archive",
			[2]string{"Content-Type: application/zip; name=\"outer.zip\"\r\n",
				b64lines(makeZip(
					zipEntry{name: "docs/inner.zip", data: makeZip(zipEntry{name: "setup.exe", data: pe})},
					zipEntry{name: "secret.doc", data: []byte("encrypted bytes"), encrypted: true}))}),
		"zip-bomb.eml": mixed("Bomb",
			[2]string{"Content-Type: application/zip; name=\"zeros.zip\"\r\n", b64lines(makeZip(zipEntry{name: "zeros.bin", data: bomb}))}),
		"targz.eml": mixed("Backup",
			[2]string{"Content-Type: application/gzip; name=\"backup.tar.gz\"\r\n", b64lines(makeTarGz("backup/evil.exe", pe))}),
		"executables.eml": mixed("Tools",
			[2]string{"Content-Type: application/octet-stream; name=\"tool\"\r\n", b64lines(padded("\x7fELF\x02\x01\x01"))},
			[2]string{"Content-Type: application/octet-stream; name=\"app\"\r\n", b64lines(padded("\xcf\xfa\xed\xfe\x07\x00\x00\x01"))},
			[2]string{"Content-Type: text/plain; name=\"notes.txt\"\r\n", b64lines([]byte("#!/bin/sh\necho harmless\n"))},
			[2]string{"Content-Type: application/octet-stream; name=\"fat\"\r\n", b64lines(padded("\xca\xfe\xba\xbe\x00\x00\x00\x02"))}),
		"macros.eml": mixed("Macros",
			[2]string{"Content-Type: application/msword; name=\"report.doc\"\r\n", b64lines(oleStub(true))},
			[2]string{"Content-Type: application/msword; name=\"clean.doc\"\r\n", b64lines(oleStub(false))},
			[2]string{"Content-Type: application/vnd.ms-word.document.macroEnabled.12; name=\"report.docm\"\r\n",
				b64lines(makeZip(zipEntry{name: "[Content_Types].xml", data: []byte("<Types/>")},
					zipEntry{name: "word/document.xml", data: []byte("<w:document/>")},
					zipEntry{name: "word/vbaProject.bin", data: oleStub(true)}))}),
		"unicode-names.eml": mixed("Names",
			[2]string{"Content-Type: application/pdf; name=\"=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("inv\u043eice.pdf")) + "?=\"\r\n", b64lines([]byte("%PDF-1.4\n"))},
			[2]string{"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"scan\u200b.pdf\u2024exe\"\r\n", b64lines([]byte("%PDF-1.4\n"))},
			[2]string{"Content-Type: image/png; name=\"chart.png\"\r\n", b64lines([]byte("%PDF-1.4\nnot a png"))},
			[2]string{"Content-Type: application/pdf; name=\"statement.pdf                                   .exe\"\r\n", b64lines([]byte("%PDF-1.4\n"))},
			[2]string{"Content-Type: application/octet-stream; name=\"../../etc/passwd\"\r\n", b64lines([]byte("root:x:0:0\n"))}),
	}
}
