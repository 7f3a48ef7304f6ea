package migrate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
)

// MaildirSource reads a Dovecot or Courier maildir (Maildir++ folders ".A.B", names in
// modified UTF-7): flags from the file names (":2,FRS" and the keyword letters a–z that
// dovecot-keywords names), the internal date from the mtime, the UIDVALIDITY and UIDs
// from dovecot-uidlist or courierimapuiddb, the POP3 unique-ids from dovecot-uidlist's
// P records or, by default, in Dovecot's default format %08Xu%08Xv (pop3_uidl_format),
// and subscriptions from Dovecot's "subscriptions" or Courier's "courierimapsubscribed".
type MaildirSource struct {
	root string
	// DovecotUIDL: compute Dovecot's default POP3 unique-id for messages that have a UID
	// and no P record (pop3_uidl_format = %08Xu%08Xv).
	DovecotUIDL bool
	// XUIDL takes a message's POP3 unique-id from its X-UIDL header when the uidlist has
	// none (Dovecot's pop3_reuse_xuidl; qpopper and older POP3 servers wrote it).
	XUIDL bool
	files map[string]string // key → file path, of the folder last listed
}

// NewMaildirSource reads the maildir at root (the directory holding cur/, new/, tmp/).
func NewMaildirSource(root string) (*MaildirSource, error) {
	if fi, err := os.Stat(filepath.Join(root, "cur")); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("migrate: %s is not a maildir (no cur/)", root)
	}
	return &MaildirSource{root: root, DovecotUIDL: true}, nil
}

// Close does nothing.
func (s *MaildirSource) Close() error { return nil }

// Folders lists INBOX and the Maildir++ folders.
func (s *MaildirSource) Folders(ctx context.Context) ([]SourceFolder, error) {
	subs := s.subscriptions()
	out := []SourceFolder{{Name: "INBOX", ref: s.root, Subscribed: subs["INBOX"]}}
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", s.root, err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || len(n) < 2 || n[0] != '.' || n == ".." {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.root, n, "cur")); err != nil {
			continue
		}
		levels := strings.Split(n[1:], ".")
		for i, l := range levels {
			levels[i] = DecodeMUTF7(l)
		}
		name := strings.Join(levels, "/")
		seen[name] = true
		out = append(out, SourceFolder{Name: name, ref: filepath.Join(s.root, n), Subscribed: subs[name]})
	}
	// Parents that exist only as a level of a child's name.
	for name := range seen {
		for p := name; strings.Contains(p, "/"); {
			p = p[:strings.LastIndexByte(p, '/')]
			if !seen[p] {
				seen[p] = true
				out = append(out, SourceFolder{Name: p, NoSelect: true, Subscribed: subs[p]})
			}
		}
	}
	sort.SliceStable(out[1:], func(i, j int) bool { return out[1+i].Name < out[1+j].Name })
	return out, nil
}

// subscriptions reads Dovecot's subscriptions file (version 2: a "V\t2" line, then names
// with levels separated by TAB) or Courier's courierimapsubscribed ("INBOX.A.B").
func (s *MaildirSource) subscriptions() map[string]bool {
	out := map[string]bool{}
	read := func(name string, fn func(string)) {
		f, err := os.Open(filepath.Join(s.root, name))
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fn(sc.Text())
		}
	}
	read("subscriptions", func(l string) {
		if l == "" || strings.HasPrefix(l, "V\t") {
			return
		}
		l = strings.ReplaceAll(l, "\t", "/")
		if !strings.Contains(l, "/") && strings.Contains(l, ".") {
			l = strings.ReplaceAll(l, ".", "/") // version 1: the separator was the folder's
		}
		out[DecodeMUTF7Path(l)] = true
	})
	read("courierimapsubscribed", func(l string) {
		l = strings.TrimPrefix(l, "INBOX.")
		if l != "" {
			out[DecodeMUTF7Path(strings.ReplaceAll(l, ".", "/"))] = true
		}
	})
	return out
}

// DecodeMUTF7Path decodes each '/'-separated level of a modified UTF-7 name.
func DecodeMUTF7Path(s string) string {
	levels := strings.Split(s, "/")
	for i, l := range levels {
		levels[i] = DecodeMUTF7(l)
	}
	return strings.Join(levels, "/")
}

// uidlist is what dovecot-uidlist or courierimapuiddb says about a folder.
type uidlist struct {
	validity uint32
	uids     map[string]uint32 // key → UID
	uidls    map[string]string // key → POP3 unique-id (Dovecot's P record)
}

func readUIDList(dir string) uidlist {
	ul := uidlist{uids: map[string]uint32{}, uidls: map[string]string{}}
	if f, err := os.Open(filepath.Join(dir, "dovecot-uidlist")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		first := true
		for sc.Scan() {
			l := sc.Text()
			if first {
				first = false
				// "3 V1234 N5 G..." (version 3) or "1 1234 5" (version 1).
				fs := strings.Fields(l)
				if len(fs) >= 2 && fs[0] == "3" {
					for _, x := range fs[1:] {
						if v, ok := strings.CutPrefix(x, "V"); ok {
							n, _ := strconv.ParseUint(v, 10, 32)
							ul.validity = uint32(n)
						}
					}
				} else if len(fs) >= 2 {
					n, _ := strconv.ParseUint(fs[1], 10, 32)
					ul.validity = uint32(n)
				}
				continue
			}
			// "UID [EXT...] :FILENAME" (version 3) or "UID FILENAME" (version 1).
			uidStr, rest, ok := strings.Cut(l, " ")
			if !ok {
				continue
			}
			uid, err := strconv.ParseUint(uidStr, 10, 32)
			if err != nil {
				continue
			}
			var file, pop string
			if i := strings.Index(rest, ":"); i >= 0 && (i == 0 || rest[i-1] == ' ') {
				file = rest[i+1:]
				for _, ext := range strings.Fields(rest[:i]) {
					if v, ok := strings.CutPrefix(ext, "P"); ok {
						pop = v
					}
				}
			} else {
				file = strings.TrimSpace(rest)
			}
			key, _, _ := strings.Cut(file, ":")
			ul.uids[key] = uint32(uid)
			if pop != "" {
				ul.uidls[key] = pop
			}
		}
		return ul
	}
	if f, err := os.Open(filepath.Join(dir, "courierimapuiddb")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		first := true
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if first {
				first = false
				if len(fs) >= 2 { // "1 UIDVALIDITY NEXTUID"
					n, _ := strconv.ParseUint(fs[1], 10, 32)
					ul.validity = uint32(n)
				}
				continue
			}
			if len(fs) == 2 {
				uid, err := strconv.ParseUint(fs[0], 10, 32)
				if err == nil {
					key, _, _ := strings.Cut(fs[1], ":")
					ul.uids[key] = uint32(uid)
				}
			}
		}
	}
	return ul
}

// readKeywords reads dovecot-keywords: "N name" lines, N indexing the letters a–z.
func readKeywords(dir string) map[byte]string {
	out := map[byte]string{}
	f, err := os.Open(filepath.Join(dir, "dovecot-keywords"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n, name, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(n)
		if ok && err == nil && i >= 0 && i < 26 && name != "" {
			out[byte('a'+i)] = name
		}
	}
	return out
}

var maildirLetters = map[byte]string{'S': `\Seen`, 'R': `\Answered`, 'F': `\Flagged`, 'T': `\Deleted`, 'D': `\Draft`, 'P': `$Forwarded`}

// Messages lists new/ and cur/, in UID order where the uidlist knows the UIDs (files it
// does not know come after, in key order).
func (s *MaildirSource) Messages(ctx context.Context, f *SourceFolder) ([]SourceMessage, error) {
	ul := readUIDList(f.ref)
	kw := readKeywords(f.ref)
	f.UIDValidity = ul.validity
	s.files = map[string]string{}
	var out []SourceMessage
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(f.ref, sub)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", dir, err)
		}
		for _, e := range ents {
			name := e.Name()
			if e.IsDir() || strings.HasPrefix(name, ".") {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue // gone meanwhile
			}
			key, info, _ := strings.Cut(name, ":")
			m := SourceMessage{ID: key, Date: fi.ModTime(), Size: fi.Size(), UID: ul.uids[key]}
			if fl, ok := strings.CutPrefix(info, "2,"); ok {
				for i := 0; i < len(fl); i++ {
					if f, ok := maildirLetters[fl[i]]; ok {
						m.Flags = append(m.Flags, f)
					} else if k, ok := kw[fl[i]]; ok {
						m.Flags = append(m.Flags, k)
					}
				}
			}
			if p, ok := ul.uidls[key]; ok {
				m.UIDL = p
			} else if x := s.xuidl(filepath.Join(dir, name)); x != "" {
				m.UIDL = x
			} else if s.DovecotUIDL && m.UID != 0 && ul.validity != 0 {
				m.UIDL = fmt.Sprintf("%08x%08x", m.UID, ul.validity) // Dovecot writes its %X in lower case
			}
			s.files[key] = filepath.Join(dir, name)
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.UID == 0) != (b.UID == 0) {
			return b.UID == 0
		}
		if a.UID != b.UID {
			return a.UID < b.UID
		}
		return a.ID < b.ID
	})
	return out, nil
}

// xuidl returns the X-UIDL header of the message file at p, when XUIDL is set.
func (s *MaildirSource) xuidl(p string) string {
	if !s.XUIDL {
		return ""
	}
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	return headerXUIDL(io.LimitReader(f, 64<<10))
}

// headerXUIDL finds an X-UIDL header field in a header block and returns its value when
// it is a valid POP3 unique-id (RFC 1939 §7: 1–70 characters 0x21–0x7E).
func headerXUIDL(r io.Reader) string {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" {
			return ""
		}
		if name, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(name, "X-UIDL") {
			v = strings.TrimSpace(v)
			if len(v) == 0 || len(v) > 70 || strings.IndexFunc(v, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
				return ""
			}
			return v
		}
	}
	return ""
}

// Fetch opens each message's file (found again by key if a flag change renamed it).
func (s *MaildirSource) Fetch(ctx context.Context, f SourceFolder, msgs []SourceMessage, fn func(SourceMessage, io.Reader) error) error {
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		fh, err := os.Open(s.files[m.ID])
		if os.IsNotExist(err) {
			fh, err = s.find(f.ref, m.ID)
		}
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("migrate: open message %s: %w", m.ID, err)
		}
		err = fn(m, bufio.NewReaderSize(fh, 64<<10))
		fh.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *MaildirSource) find(dir, key string) (*os.File, error) {
	for _, sub := range []string{"cur", "new"} {
		ms, _ := filepath.Glob(filepath.Join(dir, sub, key+":*"))
		if p := filepath.Join(dir, sub, key); len(ms) == 0 {
			if f, err := os.Open(p); err == nil {
				return f, nil
			}
		} else {
			return os.Open(ms[0])
		}
	}
	return nil, os.ErrNotExist
}

// DecodeMUTF7 decodes an IMAP modified UTF-7 name level (RFC 3501 §5.1.3); a malformed
// one is returned as it is.
func DecodeMUTF7(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return s
		}
		enc := s[i+1 : i+1+j]
		i += j + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, ok := decodeB64(strings.ReplaceAll(enc, ",", "/"))
		if !ok || len(raw)%2 != 0 {
			return s
		}
		u := make([]uint16, len(raw)/2)
		for k := range u {
			u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		b.WriteString(string(utf16.Decode(u)))
	}
	return b.String()
}

func decodeB64(s string) ([]byte, bool) {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out []byte
	var acc, bits uint
	for i := 0; i < len(s); i++ {
		v := strings.IndexByte(alpha, s[i])
		if v < 0 {
			return nil, false
		}
		acc = acc<<6 | uint(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	return out, true
}
