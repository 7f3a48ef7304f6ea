package content

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// RiskyExtensions are the extensions Windows (and some other desktops) run or open with
// active content on a double click: executables, scripts, installers, shortcuts, disk
// images that mount with their executables, and macro-enabled Office files. They decide
// Attachment.Risky and the double-extension test; rules may use their own lists.
var RiskyExtensions = []string{
	"ade", "adp", "app", "application", "appref-ms", "asp", "bas", "bat", "cab", "chm",
	"cmd", "com", "cpl", "crt", "dll", "docm", "dotm", "exe", "gadget", "hlp", "hta",
	"img", "inf", "ins", "iso", "isp", "jar", "js", "jse", "lnk", "mde", "msc", "msh",
	"msi", "msp", "mst", "pif", "potm", "ppam", "ppsm", "pptm", "ps1", "psc1", "psm1",
	"reg", "scf", "scr", "sct", "shb", "shs", "sys", "url", "vb", "vbe", "vbs", "vhd",
	"vhdx", "wsc", "wsf", "wsh", "xlam", "xll", "xlsm", "xltm",
}

// decoyExtensions are the harmless-looking extensions worms put before the real one
// (photo.jpg.scr, invoice.pdf.exe).
var decoyExtensions = []string{
	"avi", "bmp", "csv", "doc", "docx", "gif", "htm", "html", "jpeg", "jpg", "mov", "mp3",
	"mp4", "mpg", "odt", "pdf", "png", "ppt", "pptx", "rtf", "tif", "tiff", "txt", "wav",
	"xls", "xlsx", "zip", "rar", "eml", "xml",
}

var riskySet = toSet(RiskyExtensions)
var decoySet = toSet(decoyExtensions)

func toSet(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[s] = true
	}
	return m
}

// nameInfo is what one file name tells.
type nameInfo struct {
	clean   string   // the base name with invisible characters removed, trailing dots and spaces trimmed
	ext     string   // final extension, lower case, no dot
	exts    []string // every extension-like component after the first, lower case
	reasons []string
}

// analyzeName inspects a decoded attachment (or archive entry) name for the tricks that
// make a file look like something else: right-to-left override (U+202E, "cod.exe" shown
// as "exe.doc"), other bidi controls, zero-width and other invisible characters, look-alike
// dots, Latin mixed with Cyrillic or Greek, control characters, directory parts, padding
// before the real extension, trailing dots and spaces (dropped by Windows), and double
// extensions (invoice.pdf.exe).
func analyzeName(name string) nameInfo {
	var ni nameInfo
	if !utf8.ValidString(name) {
		ni.reasons = append(ni.reasons, "invalid_utf8")
		name = strings.ToValidUTF8(name, "\uFFFD")
	}
	if i := strings.LastIndexAny(name, "/\\"); i >= 0 {
		if strings.TrimSpace(name[i+1:]) != "" {
			ni.reasons = append(ni.reasons, "path_in_name")
			name = name[i+1:]
		}
	}
	var b strings.Builder
	latin, cyrGreek := false, false
	for _, r := range name {
		switch {
		case r == 0x202E:
			ni.reasons = appendOnce(ni.reasons, "rtl_override")
			continue
		case r == 0x202A || r == 0x202B || r == 0x202C || r == 0x202D || (r >= 0x2066 && r <= 0x2069) ||
			r == 0x200E || r == 0x200F || r == 0x061C:
			ni.reasons = appendOnce(ni.reasons, "bidi_control")
			continue
		case r == 0x200B || r == 0x200C || r == 0x200D || r == 0x2060 || r == 0xFEFF || r == 0x00AD ||
			r == 0x180E || r == 0x034F || (r >= 0x2061 && r <= 0x2064):
			ni.reasons = appendOnce(ni.reasons, "zero_width")
			continue
		case r == 0x2024 || r == 0xFF0E || r == 0x3002 || r == 0xFE52 || r == 0x0701 || r == 0x0702 ||
			r == 0xA4F8 || r == 0x2E31 || r == 0x00B7:
			ni.reasons = appendOnce(ni.reasons, "dot_lookalike")
			b.WriteByte('.')
			continue
		case r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0):
			ni.reasons = appendOnce(ni.reasons, "control_char")
			continue
		case r == utf8.RuneError:
			ni.reasons = appendOnce(ni.reasons, "invalid_utf8")
		case unicode.IsLetter(r):
			if r < 0x250 {
				if r >= 'A' && r <= 'z' || r >= 0xC0 {
					latin = true
				}
			} else if unicode.Is(unicode.Cyrillic, r) || unicode.Is(unicode.Greek, r) {
				cyrGreek = true
			}
		case unicode.Is(unicode.Cf, r):
			ni.reasons = appendOnce(ni.reasons, "invisible_char")
			continue
		}
		b.WriteRune(r)
	}
	if latin && cyrGreek {
		ni.reasons = appendOnce(ni.reasons, "mixed_script")
	}
	clean := b.String()
	trimmed := strings.TrimRight(clean, " .\t")
	if trimmed != clean && trimmed != "" {
		ni.reasons = appendOnce(ni.reasons, "trailing_dot_space")
	}
	clean = trimmed
	ni.clean = clean
	dot := strings.LastIndexByte(clean, '.')
	if dot < 0 {
		return ni
	}
	if dot > 0 {
		before := clean[:dot]
		if strings.HasSuffix(before, "    ") || strings.HasSuffix(before, "____") ||
			strings.HasSuffix(before, "\u3000\u3000") {
			ni.reasons = appendOnce(ni.reasons, "padded_name")
		}
	}
	ni.ext = strings.ToLower(strings.TrimSpace(clean[dot+1:]))
	parts := strings.Split(clean, ".")
	if len(parts) > 16 {
		parts = parts[len(parts)-16:]
	}
	for _, p := range parts[1:] {
		p = strings.ToLower(strings.TrimSpace(p))
		if isExtLike(p) {
			ni.exts = append(ni.exts, p)
		}
	}
	if n := len(ni.exts); n >= 2 && riskySet[ni.ext] && ni.exts[n-1] == ni.ext && decoySet[ni.exts[n-2]] {
		ni.reasons = appendOnce(ni.reasons, "double_extension")
	}
	return ni
}

// isExtLike reports whether s looks like a file extension: 1 to 11 letters, digits or '-'.
func isExtLike(s string) bool {
	if s == "" || len(s) > 11 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
