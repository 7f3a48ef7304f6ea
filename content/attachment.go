package content

import (
	"strings"
)

// Attachment is one attached file, or one entry of an attached archive.
type Attachment struct {
	// Path is the MIME path of the part that holds the file (for archive entries, of the
	// part that holds the outermost archive).
	Path string
	// Name is the decoded file name (Content-Disposition filename, else Content-Type
	// name; for archive entries the entry's base name), without directories. Names holds
	// every distinct candidate name: more than one means the message is ambiguous about
	// the name, and every one of them is checked.
	Name  string
	Names []string
	// EntryPath is the full path of an archive entry.
	EntryPath string
	// Ext is the final extension of Name, lower case without the dot; Exts holds every
	// extension-like component of every candidate name ("invoice.pdf.exe": pdf, exe).
	Ext  string
	Exts []string
	// DeclaredType is the Content-Type the message declares ("" for archive entries);
	// DetectedType is what the content's magic numbers say.
	DeclaredType string
	DetectedType string
	Disposition  string
	Size         int64
	// Executable is set for content that runs: PE/DOS, ELF, Mach-O, Java classes,
	// shebang scripts, Windows shortcuts and Office documents with VBA macros
	// (ExecKind says which: pe, dos, elf, macho, java, script, lnk, office_macro).
	Executable bool
	ExecKind   string
	Macros     bool
	// Archive is zip, gzip or tar when the content is an archive that was listed;
	// ArchiveEntries counts its entries. Encrypted is set on an encrypted entry and on
	// the archive holding one. Bomb is set when an entry's compression ratio or size
	// exceeds the limits.
	Archive        string
	ArchiveEntries int
	Encrypted      bool
	Bomb           bool
	// InArchive is the name of the archive holding this entry ("outer.zip/inner.zip"
	// when nested), "" for a MIME part.
	InArchive string
	// Risky: some candidate name ends in one of RiskyExtensions.
	Risky bool
	// DoubleExt: a risky extension after a harmless-looking one (photo.jpg.scr).
	DoubleExt bool
	// SuspiciousName: the name uses a trick (see Reasons) or could not be decided.
	SuspiciousName bool
	// TypeMismatch: the declared type or the extension contradicts the content.
	TypeMismatch bool
	// Reasons lists the findings as codes: executable, risky_extension,
	// double_extension, rtl_override, bidi_control, zero_width, dot_lookalike,
	// invisible_char, control_char, mixed_script, padded_name, trailing_dot_space,
	// path_in_name, invalid_utf8, duplicate_param, name_conflict, name_mismatch,
	// continuation_gap, undecodable_name, unknown_charset, malformed_params,
	// type_mismatch, ext_mismatch, encrypted, zip_bomb, archive_limit,
	// corrupt_archive, unsupported_method, hidden_in_text, uuencoded, bad_uuencode.
	Reasons []string
	// Data is the decoded content of a MIME part (nil for archive entries).
	Data []byte `json:"-"`
}

// nameReasons are the reasons that make a name suspicious.
var nameReasons = toSet([]string{
	"double_extension", "rtl_override", "bidi_control", "zero_width", "dot_lookalike",
	"invisible_char", "control_char", "mixed_script", "padded_name", "trailing_dot_space",
	"path_in_name", "invalid_utf8", "duplicate_param", "name_conflict", "name_mismatch",
	"continuation_gap", "undecodable_name", "unknown_charset", "malformed_params",
})

// Record returns the attachment as the map rules see in msg.attachments.
func (a *Attachment) Record() map[string]any {
	typ := a.DeclaredType
	if typ == "" {
		typ = a.DetectedType
	}
	return map[string]any{
		"path":            a.Path,
		"name":            a.Name,
		"names":           nonNil(a.Names),
		"entry_path":      a.EntryPath,
		"ext":             a.Ext,
		"exts":            nonNil(a.Exts),
		"type":            typ,
		"declared_type":   a.DeclaredType,
		"detected_type":   a.DetectedType,
		"disposition":     a.Disposition,
		"size":            int(a.Size),
		"executable":      a.Executable,
		"exec_kind":       a.ExecKind,
		"macros":          a.Macros,
		"archive":         a.Archive,
		"archive_entries": a.ArchiveEntries,
		"encrypted":       a.Encrypted,
		"bomb":            a.Bomb,
		"in_archive":      a.InArchive,
		"risky":           a.Risky,
		"double_ext":      a.DoubleExt,
		"suspicious_name": a.SuspiciousName,
		"type_mismatch":   a.TypeMismatch,
		"reasons":         nonNil(a.Reasons),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *Attachment) reason(r string) { a.Reasons = appendOnce(a.Reasons, r) }

// setNames analyses the candidate names and fills the name fields.
func (a *Attachment) setNames(names []string) {
	for i, n := range names {
		ni := analyzeName(n)
		if i == 0 {
			a.Name = ni.clean
			a.Ext = ni.ext
		}
		if !containsString(a.Names, ni.clean) {
			a.Names = append(a.Names, ni.clean)
		}
		for _, e := range ni.exts {
			a.Exts = appendOnce(a.Exts, e)
		}
		if riskySet[ni.ext] {
			a.Risky = true
		}
		for _, r := range ni.reasons {
			a.reason(r)
		}
	}
	if a.Risky {
		a.reason("risky_extension")
	}
	a.flags()
}

// flags derives the booleans from the reasons.
func (a *Attachment) flags() {
	for _, r := range a.Reasons {
		if nameReasons[r] {
			a.SuspiciousName = true
		}
		if r == "double_extension" {
			a.DoubleExt = true
		}
	}
}

// extFamily maps an extension to the sniff family its content should have, "" when the
// extension promises nothing checkable.
func extFamily(ext string) string {
	switch ext {
	case "jpg", "jpeg", "jpe":
		return "jpeg"
	case "png", "gif", "pdf", "bmp", "zip", "rtf":
		return ext
	case "gz", "tgz":
		return "gzip"
	case "doc", "xls", "ppt", "msg", "msi":
		return "ole"
	case "docx", "xlsx", "pptx", "docm", "xlsm", "pptm", "odt", "ods", "odp", "jar":
		return "zip"
	case "txt", "csv", "htm", "html":
		return "text"
	}
	return ""
}

// inspect sniffs the content and fills the type, executable and mismatch fields.
func (a *Attachment) inspect(data []byte) sniffed {
	s := sniff(data)
	a.DetectedType = s.typ
	if s.exec != "" {
		a.Executable = true
		a.ExecKind = s.exec
		a.reason("executable")
		if s.exec == "office_macro" {
			a.Macros = true
		}
	}
	if typeMismatch(a.DeclaredType, s) {
		a.TypeMismatch = true
		a.reason("type_mismatch")
	}
	if ef := extFamily(a.Ext); ef != "" && s.family != "" && ef != s.family &&
		!(ef == "text" && (s.family == "script" || s.family == "rtf")) && !(s.family == "text" && ef != "text") {
		a.TypeMismatch = true
		a.reason("ext_mismatch")
	}
	return s
}

// leaf handles a non-multipart entity: text for the body, or an attachment.
// mt is the type to treat it as (text/plain for a multipart whose boundary is missing).
func (w *walker) leaf(p *Part, mt string, body []byte, params, dparams []param, badParams bool) {
	data := w.decode(p, body)
	p.Decoded = data
	cdNames, cdProbs := nameValues(dparams, "filename")
	ctNames, ctProbs := nameValues(params, "name")
	isText := mt == "text/plain" || mt == "text/html"
	named := len(cdNames) > 0 || len(ctNames) > 0 || len(cdProbs) > 0 || len(ctProbs) > 0
	if !named && p.Disposition != "attachment" && strings.HasPrefix(mt, "text/") {
		if isText {
			s := sniff(data)
			if s.exec != "" || s.archive != "" {
				a := &Attachment{Path: p.Path, DeclaredType: p.MediaType, Disposition: p.Disposition, Size: int64(len(data)), Data: data}
				a.reason("hidden_in_text")
				w.addAttachment(a, data)
				return
			}
			w.addText(p, mt, data)
			if mt == "text/plain" {
				w.addUU(p, data)
			}
		}
		return
	}
	a := &Attachment{Path: p.Path, DeclaredType: p.MediaType, Disposition: p.Disposition, Size: int64(len(data)), Data: data}
	names := append(append([]string{}, cdNames...), ctNames...)
	for _, pr := range append(cdProbs, ctProbs...) {
		a.reason(pr)
	}
	if badParams && named {
		a.reason("malformed_params")
	}
	if len(cdNames) > 0 && len(ctNames) > 0 {
		// Clients disagree on which of the two names wins; a differing extension is a
		// classic evasion.
		if analyzeName(cdNames[0]).ext != analyzeName(ctNames[0]).ext {
			a.reason("name_mismatch")
		}
	}
	a.setNames(names)
	w.addAttachment(a, data)
}

// addAttachment inspects content, appends a and lists it when it is an archive.
func (w *walker) addAttachment(a *Attachment, data []byte) {
	s := a.inspect(data)
	w.msg.Attachments = append(w.msg.Attachments, a)
	if s.archive != "" {
		w.listArchive(a, data, s.archive, 1, nil)
	}
}

// messageAttachment records an attached message that carries a file name or an
// attachment disposition: clients save it under that name, which may be a trick of its
// own. Its content is walked as a message, not sniffed.
func (w *walker) messageAttachment(p *Part, params, dparams []param, badParams bool) {
	cdNames, cdProbs := nameValues(dparams, "filename")
	ctNames, ctProbs := nameValues(params, "name")
	named := len(cdNames) > 0 || len(ctNames) > 0 || len(cdProbs) > 0 || len(ctProbs) > 0
	if !named && p.Disposition != "attachment" {
		return
	}
	a := &Attachment{Path: p.Path, DeclaredType: p.MediaType, DetectedType: p.MediaType,
		Disposition: p.Disposition, Size: int64(p.End - p.BodyStart)}
	for _, pr := range append(cdProbs, ctProbs...) {
		a.reason(pr)
	}
	if badParams && named {
		a.reason("malformed_params")
	}
	a.setNames(append(cdNames, ctNames...))
	w.msg.Attachments = append(w.msg.Attachments, a)
}
