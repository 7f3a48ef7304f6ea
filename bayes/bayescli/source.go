package bayescli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MaxMessageSize bounds one message read from a mailbox; larger ones are truncated
// (the tokenizer reads at most 1 MiB anyway).
const MaxMessageSize = 4 << 20

// Message is one message read from a mail source.
type Message struct {
	Name string // file name, or "mbox:N" for the Nth message of an mbox
	Raw  []byte
}

// ListSource returns the messages at path, which may be a maildir (cur/ and new/), a
// directory of message files (read recursively, sorted by name), an mbox file, or a
// single message file. Symbolic links are followed, to files and to directories (a
// directory reached again through a link is read once); names starting with "." are
// skipped. A directory without any message is an error that names it. Messages are
// read lazily by the returned iterator.
func ListSource(path string) (*Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("mail source %s: %w", path, err)
	}
	s := &Source{path: path}
	if fi.IsDir() {
		var files []string
		root := path
		maildir := isMaildir(path)
		if maildir {
			for _, sub := range []string{"cur", "new"} {
				fs, err := listFiles(filepath.Join(path, sub))
				if err != nil {
					return nil, err
				}
				files = append(files, fs...)
			}
		} else {
			fs, err := listFiles(root)
			if err != nil {
				return nil, err
			}
			files = fs
		}
		if len(files) == 0 {
			if maildir {
				return nil, fmt.Errorf("mail source %s: no messages in this maildir's cur/ and new/", path)
			}
			return nil, fmt.Errorf("mail source %s: no messages in this folder (names starting with . are skipped)", path)
		}
		s.files = files
		return s, nil
	}
	head := make([]byte, 5)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mail source %s: %w", path, err)
	}
	n, _ := io.ReadFull(f, head)
	f.Close()
	if n == 5 && string(head) == "From " {
		s.mbox = true
	} else {
		s.files = []string{path}
	}
	return s, nil
}

func isMaildir(p string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(p, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// listFiles returns the regular files under dir, recursively, sorted, following
// symbolic links (as bogofilter and find -L do): a link to a file lists the link, a
// link to a directory is descended into, except into a directory already listed (a
// loop, or a second link to one), which is read once. Names starting with "." are
// skipped; a link that leads nowhere is an error.
func listFiles(dir string) ([]string, error) {
	var out []string
	seen := map[string]bool{} // directories listed, by their path without links
	var walk func(dir string) error
	walk = func(dir string) error {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return err
		}
		if seen[real] {
			return nil
		}
		seen[real] = true
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			typ := e.Type()
			if typ&fs.ModeSymlink != 0 {
				fi, err := os.Stat(p)
				if err != nil {
					return fmt.Errorf("symbolic link %s: %w", p, err)
				}
				typ = fi.Mode().Type()
			}
			switch {
			case typ.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			case typ.IsRegular():
				out = append(out, p)
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	slices.Sort(out)
	return out, nil
}

// Source is a list of messages from one path.
type Source struct {
	path  string
	files []string
	mbox  bool
}

// fileNames returns the message files of a source that is not an mbox (nil for an
// mbox), so that callers can read them in parallel.
func (s *Source) fileNames() []string {
	if s.mbox {
		return nil
	}
	return s.files
}

// Len returns the number of messages, or -1 for an mbox (not counted in advance).
func (s *Source) Len() int {
	if s.mbox {
		return -1
	}
	return len(s.files)
}

// Each calls fn for every message in order; it stops at the first error.
func (s *Source) Each(ctx context.Context, fn func(Message) error) error {
	if s.mbox {
		return eachMbox(ctx, s.path, fn)
	}
	for _, p := range s.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, err := readLimited(p)
		if err != nil {
			return err
		}
		if err := fn(Message{Name: p, Raw: raw}); err != nil {
			return err
		}
	}
	return nil
}

func readLimited(p string) ([]byte, error) {
	raw, err := readFile(p, MaxMessageSize)
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return raw, nil
}

// readAtMost reads at most max bytes from r into a buffer sized for the expected
// size (the file's, when known), so that a whole message takes one read.
func readAtMost(r io.Reader, size, max int64) ([]byte, error) {
	if size <= 0 || size > max {
		size = min(max, 64<<10)
	}
	buf := make([]byte, 0, size+1) // +1: the read that sees the end needs no growth
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(int64(cap(buf)), max)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// eachMbox splits an mbox (mboxrd: "From " lines start messages, ">From " is
// unescaped) and drops the envelope line.
func eachMbox(ctx context.Context, path string, fn func(Message) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open mbox: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var cur bytes.Buffer
	n := 0
	in := false
	flush := func() error {
		if !in {
			return nil
		}
		n++
		raw := bytes.Clone(cur.Bytes())
		cur.Reset()
		return fn(Message{Name: fmt.Sprintf("%s:%d", path, n), Raw: raw})
	}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// overlong line: keep it whole
			buf := bytes.Clone(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte("From ")) {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := flush(); err != nil {
					return err
				}
				in = true
			} else if in {
				if l := bytes.TrimLeft(line, ">"); len(l) < len(line) && bytes.HasPrefix(l, []byte("From ")) {
					line = line[1:]
				}
				if cur.Len() < MaxMessageSize {
					cur.Write(line)
				}
			}
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return fmt.Errorf("read mbox %s: %w", path, err)
		}
	}
}
