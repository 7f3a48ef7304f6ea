package migrate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// MboxSource reads mbox files: one file is one folder; a directory holds one folder per
// file, nested by subdirectories (Thunderbird's "NAME.sbd" directories too). A message
// starts at a "From " line at the start of the file or after an empty line; the empty line
// before it belongs to the separator. Flags come from Status (R: \Seen), X-Status (A:
// \Answered, F: \Flagged, T: \Draft, D: \Deleted) and X-Keywords; these headers and the
// other mbox bookkeeping headers (X-UID, X-IMAP, X-IMAPbase, Content-Length) are not part
// of the stored message, as in Dovecot and mutt. The internal date is the From line's.
// A message's id is the SHA-256 of its bytes and its occurrence, so a rewritten mbox (a
// message deleted, flags changed) copies nothing twice.
type MboxSource struct {
	path   string
	single string // the folder name of a single file
	spans  map[string]span
}

type span struct {
	file     string
	off, end int64
}

// NewMboxSource reads path: a file (copied into folder, INBOX when empty) or a directory.
func NewMboxSource(path, folder string) (*MboxSource, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("migrate: mbox: %w", err)
	}
	s := &MboxSource{path: path}
	if !fi.IsDir() {
		if folder == "" {
			folder = "INBOX"
		}
		s.single = folder
	}
	return s, nil
}

// Close does nothing.
func (s *MboxSource) Close() error { return nil }

// Folders lists the mbox files.
func (s *MboxSource) Folders(ctx context.Context) ([]SourceFolder, error) {
	if s.single != "" {
		return []SourceFolder{{Name: s.single, ref: s.path, Subscribed: true}}, nil
	}
	var out []SourceFolder
	dirs := map[string]bool{}
	err := filepath.WalkDir(s.path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.path, p)
		if rel == "." || strings.HasPrefix(d.Name(), ".") {
			if rel != "." && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		name := strings.ReplaceAll(filepath.ToSlash(rel), ".sbd/", "/")
		name = strings.TrimSuffix(name, ".sbd")
		name = strings.TrimSuffix(name, ".mbox")
		if d.IsDir() {
			dirs[name] = true
			return nil
		}
		if strings.HasSuffix(p, ".msf") || strings.HasSuffix(p, ".lock") {
			return nil
		}
		if strings.EqualFold(name, "inbox") {
			name = "INBOX"
		}
		out = append(out, SourceFolder{Name: name, ref: p, Subscribed: true})
		delete(dirs, name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: mbox %s: %w", s.path, err)
	}
	have := map[string]bool{}
	for _, f := range out {
		have[f.Name] = true
	}
	for d := range dirs {
		if !have[d] {
			out = append(out, SourceFolder{Name: d, NoSelect: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// maxLine bounds the part of a line the scanner looks at; longer lines stream through.
const maxLine = 64 << 10

// Messages finds the messages, hashes them and reads their flags.
func (s *MboxSource) Messages(ctx context.Context, f *SourceFolder) ([]SourceMessage, error) {
	fh, err := os.Open(f.ref)
	if err != nil {
		return nil, fmt.Errorf("migrate: mbox: %w", err)
	}
	defer fh.Close()
	spans, dates, err := scanMbox(fh)
	if err != nil {
		return nil, fmt.Errorf("migrate: mbox %s: %w", f.ref, err)
	}
	s.spans = map[string]span{}
	seen := map[string]int{}
	out := make([]SourceMessage, 0, len(spans))
	for i, sp := range spans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h := sha256.New()
		c := &countWriter{w: h}
		meta, err := filterMbox(io.NewSectionReader(fh, sp.off, sp.end-sp.off), c)
		if err != nil {
			return nil, fmt.Errorf("migrate: mbox %s at %d: %w", f.ref, sp.off, err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		seen[sum]++
		id := fmt.Sprintf("%s#%d", sum, seen[sum])
		sp.file = f.ref
		s.spans[id] = sp
		out = append(out, SourceMessage{ID: id, Flags: meta.flags, Date: dates[i], Size: c.n, UIDL: meta.uidl})
	}
	return out, nil
}

// Fetch streams each message through the header filter.
func (s *MboxSource) Fetch(ctx context.Context, f SourceFolder, msgs []SourceMessage, fn func(SourceMessage, io.Reader) error) error {
	fh, err := os.Open(f.ref)
	if err != nil {
		return fmt.Errorf("migrate: mbox: %w", err)
	}
	defer fh.Close()
	for _, m := range msgs {
		sp, ok := s.spans[m.ID]
		if !ok {
			continue
		}
		pr, pw := io.Pipe()
		go func() {
			_, err := filterMbox(io.NewSectionReader(fh, sp.off, sp.end-sp.off), pw)
			pw.CloseWithError(err)
		}()
		err := fn(m, pr)
		pr.CloseWithError(errors.New("migrate: reader closed"))
		if err != nil {
			return err
		}
	}
	return nil
}

// scanMbox returns the byte spans of the messages (without the From line and the empty
// separator line) and their From-line dates.
func scanMbox(r io.ReaderAt) ([]span, []time.Time, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, 1<<62), maxLine)
	var spans []span
	var dates []time.Time
	var off int64
	cur := int64(-1)
	prevEmpty, atStart := true, true
	heldEmpty := int64(-1) // offset of an empty line that may be a separator
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if atStart && prevEmpty && bytes.HasPrefix(line, []byte("From ")) {
				if cur >= 0 {
					end := off
					if heldEmpty >= 0 {
						end = heldEmpty
					}
					spans = append(spans, span{off: cur, end: end})
				}
				dates = append(dates, fromDate(string(line)))
				n := int64(len(line))
				for errors.Is(err, bufio.ErrBufferFull) { // an overlong From line
					line, err = br.ReadSlice('\n')
					n += int64(len(line))
				}
				off += n
				cur = off
				prevEmpty, heldEmpty, atStart = false, -1, true
			} else {
				empty := atStart && line[len(line)-1] == '\n' && (len(line) == 1 || (len(line) == 2 && line[0] == '\r'))
				if empty {
					heldEmpty = off
				} else {
					heldEmpty = -1
				}
				prevEmpty = empty
				off += int64(len(line))
				atStart = line[len(line)-1] == '\n'
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, nil, err
		}
	}
	if cur >= 0 {
		end := off
		if heldEmpty >= 0 {
			end = heldEmpty
		}
		spans = append(spans, span{off: cur, end: end})
	}
	if len(spans) == 0 && off > 0 {
		return nil, nil, errors.New("no \"From \" line: not an mbox")
	}
	return spans, dates, nil
}

// fromDate parses the date of a From line ("From sender Mon Jan  2 15:04:05 2006",
// optionally with a zone); the zero time when it has none.
func fromDate(line string) time.Time {
	fs := strings.Fields(strings.TrimSpace(line))
	if len(fs) < 7 {
		return time.Time{}
	}
	s := strings.Join(fs[2:7], " ")
	if t, err := time.Parse("Mon Jan 2 15:04:05 2006", s); err == nil {
		if len(fs) >= 8 {
			if z, err := time.Parse("-0700", fs[7]); err == nil {
				_, off := z.Zone()
				return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.FixedZone("", off))
			}
		}
		return t
	}
	return time.Time{}
}

// mboxHidden are the headers mbox readers keep for themselves (Dovecot's
// mbox_hide_headers, mutt's).
var mboxHidden = []string{"status", "x-status", "x-keywords", "x-uid", "x-imap", "x-imapbase", "content-length"}

type mboxMeta struct {
	flags []string
	uidl  string // from X-UIDL
}

// filterMbox copies a message from r to w without the mbox bookkeeping headers and
// returns the flags they held.
func filterMbox(r io.Reader, w io.Writer) (mboxMeta, error) {
	br := bufio.NewReaderSize(r, maxLine)
	var meta mboxMeta
	var status, xstatus, keywords strings.Builder
	var into *strings.Builder
	drop := false
	atStart := true
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			endsLine := line[len(line)-1] == '\n'
			if atStart {
				if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
					if _, werr := w.Write(line); werr != nil {
						return meta, werr
					}
					break // end of the header
				}
				if line[0] == ' ' || line[0] == '\t' {
					// A continuation line goes with its header.
				} else {
					drop, into = false, nil
					name, _, ok := bytes.Cut(line, []byte(":"))
					if ok {
						n := strings.ToLower(strings.TrimSpace(string(name)))
						for _, h := range mboxHidden {
							if n == h {
								drop = true
							}
						}
						switch n {
						case "status":
							into = &status
						case "x-status":
							into = &xstatus
						case "x-keywords":
							into = &keywords
						case "x-uidl":
							// Kept in the message; its value is the POP3 unique-id (qpopper).
							if v := headerXUIDL(bytes.NewReader(line)); v != "" && meta.uidl == "" {
								meta.uidl = v
							}
						}
						if into != nil {
							line = line[len(name)+1:]
						}
					}
				}
			}
			if into != nil && into.Len() < 4096 {
				into.Write(line)
			}
			if !drop {
				if _, werr := w.Write(line); werr != nil {
					return meta, werr
				}
			}
			atStart = endsLine
		}
		if errors.Is(err, io.EOF) {
			meta.flags = mboxFlags(status.String(), xstatus.String(), keywords.String())
			return meta, nil
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return meta, err
		}
	}
	meta.flags = mboxFlags(status.String(), xstatus.String(), keywords.String())
	_, err := io.Copy(w, br)
	return meta, err
}

func mboxFlags(status, xstatus, keywords string) []string {
	var out []string
	if strings.Contains(status, "R") {
		out = append(out, `\Seen`)
	}
	for c, f := range map[string]string{"A": `\Answered`, "F": `\Flagged`, "T": `\Draft`, "D": `\Deleted`} {
		if strings.Contains(xstatus, c) {
			out = append(out, f)
		}
	}
	out = append(out, strings.FieldsFunc(keywords, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' })...)
	sort.Strings(out)
	return out
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
