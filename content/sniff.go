package content

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// sniffed is what the first bytes of a file say it is.
type sniffed struct {
	typ     string // detected media type
	family  string // coarse family used to compare with the declared type
	exec    string // executable kind: pe, dos, elf, macho, java, script, lnk, office_macro
	archive string // zip, gzip, bzip2, tar ("" when not an archive we list)
}

var (
	oleMagic    = []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}
	vbaProject  = utf16le("_VBA_PROJECT")
	oleMacros   = utf16le("Macros")
	lnkMagic    = []byte{0x4C, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00}
	sevenZMagic = []byte{'7', 'z', 0xBC, 0xAF, 0x27, 0x1C}
)

func utf16le(s string) []byte {
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, s[i], 0)
	}
	return b
}

// sniff identifies b by its magic numbers. Executables are recognised whatever their
// name: PE (an MZ header whose e_lfanew points at "PE\0\0"), DOS MZ, ELF, every Mach-O
// magic (32/64-bit, both byte orders, fat), Java classes, "#!" scripts, Windows shortcuts
// and Office documents carrying VBA macros (OLE2 with a _VBA_PROJECT or Macros stream;
// OOXML macros are found when the zip is listed).
func sniff(b []byte) sniffed {
	n := len(b)
	switch {
	case n >= 2 && b[0] == 'M' && b[1] == 'Z':
		if n >= 0x40 {
			off := int(binary.LittleEndian.Uint32(b[0x3C:]))
			// Packers (MEW, Upack) overlap the PE header with the DOS header, so
			// e_lfanew may point below 0x40.
			if off >= 2 && off+4 <= n && bytes.Equal(b[off:off+4], []byte("PE\x00\x00")) {
				return sniffed{typ: "application/x-msdownload", family: "exe", exec: "pe"}
			}
			return sniffed{typ: "application/x-dosexec", family: "exe", exec: "dos"}
		}
	case n >= 4 && string(b[:4]) == "\x7fELF":
		return sniffed{typ: "application/x-executable", family: "elf", exec: "elf"}
	case n >= 4 && isMachO(b):
		return sniffed{typ: "application/x-mach-binary", family: "macho", exec: "macho"}
	case n >= 8 && string(b[:4]) == "\xca\xfe\xba\xbe":
		return sniffed{typ: "application/java-vm", family: "java", exec: "java"}
	case n >= 3 && b[0] == '#' && b[1] == '!' && (b[2] == '/' || b[2] == ' ' && n > 3 && b[3] == '/'):
		return sniffed{typ: "text/x-shellscript", family: "script", exec: "script"}
	case n >= 8 && bytes.Equal(b[:8], lnkMagic):
		return sniffed{typ: "application/x-ms-shortcut", family: "lnk", exec: "lnk"}
	case n >= 8 && bytes.Equal(b[:8], oleMagic):
		if bytes.Contains(b, vbaProject) || bytes.Contains(b, oleMacros) {
			return sniffed{typ: "application/x-ole-storage", family: "ole", exec: "office_macro"}
		}
		return sniffed{typ: "application/x-ole-storage", family: "ole"}
	case n >= 4 && (string(b[:4]) == "PK\x03\x04" || string(b[:4]) == "PK\x05\x06"):
		return sniffed{typ: "application/zip", family: "zip", archive: "zip"}
	case n >= 3 && b[0] == 0x1F && b[1] == 0x8B && b[2] == 8:
		return sniffed{typ: "application/gzip", family: "gzip", archive: "gzip"}
	case n >= 10 && string(b[:3]) == "BZh" && b[3] >= '1' && b[3] <= '9' && string(b[4:10]) == "1AY&SY":
		return sniffed{typ: "application/x-bzip2", family: "bzip2", archive: "bzip2"}
	case n >= 262 && string(b[257:262]) == "ustar":
		return sniffed{typ: "application/x-tar", family: "tar", archive: "tar"}
	case n >= 6 && bytes.Equal(b[:6], sevenZMagic):
		return sniffed{typ: "application/x-7z-compressed", family: "7z"}
	case n >= 6 && string(b[:6]) == "\xfd7zXZ\x00":
		return sniffed{typ: "application/x-xz", family: "xz"}
	case n >= 7 && string(b[:7]) == "Rar!\x1a\x07":
		return sniffed{typ: "application/vnd.rar", family: "rar"}
	case n >= 4 && string(b[:4]) == "MSCF":
		return sniffed{typ: "application/vnd.ms-cab-compressed", family: "cab"}
	case n >= 5 && string(b[:5]) == "%PDF-":
		return sniffed{typ: "application/pdf", family: "pdf"}
	case n >= 5 && string(b[:5]) == "{\\rtf":
		return sniffed{typ: "application/rtf", family: "rtf"}
	case n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return sniffed{typ: "image/jpeg", family: "jpeg"}
	case n >= 8 && string(b[:8]) == "\x89PNG\r\n\x1a\n":
		return sniffed{typ: "image/png", family: "png"}
	case n >= 6 && (string(b[:6]) == "GIF87a" || string(b[:6]) == "GIF89a"):
		return sniffed{typ: "image/gif", family: "gif"}
	case n >= 2 && string(b[:2]) == "BM" && n >= 14:
		return sniffed{typ: "image/bmp", family: "bmp"}
	case n >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return sniffed{typ: "image/webp", family: "webp"}
	}
	if n >= 0x8006 && string(b[0x8001:0x8006]) == "CD001" {
		return sniffed{typ: "application/x-iso9660-image", family: "iso"}
	}
	if looksHTML(b) {
		return sniffed{typ: "text/html", family: "text"}
	}
	if looksText(b) {
		return sniffed{typ: "text/plain", family: "text"}
	}
	return sniffed{typ: "application/octet-stream"}
}

func isMachO(b []byte) bool {
	switch string(b[:4]) {
	case "\xfe\xed\xfa\xce", "\xfe\xed\xfa\xcf", "\xce\xfa\xed\xfe", "\xcf\xfa\xed\xfe", "\xca\xfe\xba\xbf", "\xbf\xba\xfe\xca":
		return true
	case "\xca\xfe\xba\xbe":
		// Fat Mach-O and Java classes share this magic: a fat header's architecture
		// count is small, a class file's version is at least 45.
		return len(b) >= 8 && binary.BigEndian.Uint32(b[4:8]) < 45
	}
	return false
}

// htmlPrefixes are the starts that mark HTML, as in the WHATWG MIME sniffing standard
// (§7.1): each followed by a space or ">".
var htmlPrefixes = []string{"<!doctype html", "<html", "<head", "<script", "<iframe", "<h1", "<div",
	"<font", "<table", "<a", "<style", "<title", "<b", "<body", "<br", "<p", "<!--"}

func looksHTML(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n\f")
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for _, p := range htmlPrefixes {
		if len(b) > len(p) && bytes.EqualFold(b[:len(p)], []byte(p)) && (b[len(p)] == ' ' || b[len(p)] == '>') {
			return true
		}
	}
	return false
}

// looksText reports whether the first KiB has no control bytes other than whitespace.
func looksText(b []byte) bool {
	if len(b) > 1024 {
		b = b[:1024]
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b {
			return false
		}
	}
	return true
}

// declaredFamily maps a declared media type onto the families of sniff, "" when the
// declared type says nothing specific (application/octet-stream and friends).
func declaredFamily(t string) string {
	switch t {
	case "", "application/octet-stream", "application/binary", "application/unknown",
		"application/x-unknown", "binary/octet-stream", "application/download", "application/force-download":
		return ""
	case "application/zip", "application/x-zip", "application/x-zip-compressed", "multipart/x-zip":
		return "zip"
	case "application/gzip", "application/x-gzip", "application/x-gunzip", "application/gzipped":
		return "gzip"
	case "application/x-tar", "application/tar":
		return "tar"
	case "application/x-bzip2", "application/x-bzip", "application/bzip2":
		return "bzip2"
	case "application/pdf", "application/x-pdf":
		return "pdf"
	case "image/jpeg", "image/jpg", "image/pjpeg":
		return "jpeg"
	case "image/png", "image/x-png":
		return "png"
	case "image/gif":
		return "gif"
	case "image/bmp", "image/x-bmp", "image/x-ms-bmp":
		return "bmp"
	case "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
		"application/x-msi", "application/x-ole-storage", "application/vnd.visio", "application/vnd.ms-outlook":
		return "ole"
	case "application/rtf", "text/rtf":
		return "rtf"
	case "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
		"application/x-exe", "application/exe", "application/x-executable-file", "application/vnd.microsoft.portable-executable":
		return "exe"
	case "application/x-7z-compressed":
		return "7z"
	case "application/x-xz":
		return "xz"
	case "application/vnd.rar", "application/x-rar-compressed", "application/x-rar":
		return "rar"
	}
	if strings.HasPrefix(t, "application/vnd.openxmlformats-officedocument.") ||
		strings.HasPrefix(t, "application/vnd.ms-") && strings.Contains(t, "macroenabled") ||
		strings.HasPrefix(t, "application/vnd.oasis.opendocument.") || t == "application/java-archive" {
		return "zip"
	}
	if strings.HasPrefix(t, "text/") {
		return "text"
	}
	return "?"
}

// typeMismatch reports whether a declared type contradicts the sniffed family: an
// "image/jpeg" that is a PE executable, a "application/pdf" that is a zip.
func typeMismatch(declared string, s sniffed) bool {
	df := declaredFamily(declared)
	if df == "" || df == "?" || s.family == "" {
		return false
	}
	if df == "text" {
		// Text may well start like anything textual; only binary content contradicts it.
		return s.family != "text" && s.family != "script" && s.family != "rtf"
	}
	if s.family == "text" {
		return false // base64 damage, signatures as text; too weak to call
	}
	return df != s.family
}
