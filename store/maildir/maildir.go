// Package maildir implements the maildir format (https://cr.yp.to/proto/maildir.html) by
// hand: a directory with tmp, new and cur subdirectories, delivery by writing into tmp,
// fsync, and an atomic link or rename into new, unique file names, and the ":2,FLAGS"
// info suffix that records message flags in cur. Dovecot, mutt and other maildir readers
// can share the directories it writes.
//
// A message is identified by its key, the unique part of its file name before the ':'.
// In new the file name is the key; in cur it is key + ":2," + flags.
package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-mail/portcullis/internal/groupsync"
)

// Dir is the path of a maildir (the directory holding tmp, new and cur).
type Dir string

// Subdirectories of a maildir.
const (
	Tmp = "tmp"
	New = "new"
	Cur = "cur"
)

// ErrNotFound is returned when no file for a key exists in new or cur.
var ErrNotFound = errors.New("maildir: message not found")

// Create makes the maildir and its tmp, new and cur subdirectories (mode 0700). It is not an
// error if they already exist.
func (d Dir) Create() error {
	for _, sub := range []string{"", Tmp, New, Cur} {
		p := filepath.Join(string(d), sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return fmt.Errorf("maildir: create %s: %w", p, err)
		}
	}
	return nil
}

// Exists reports whether d looks like a maildir (has cur, new and tmp).
func (d Dir) Exists() bool {
	for _, sub := range []string{Tmp, New, Cur} {
		fi, err := os.Stat(filepath.Join(string(d), sub))
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// Path returns the path of the file name in the given subdirectory.
func (d Dir) Path(sub, name string) string { return filepath.Join(string(d), sub, name) }

var seq atomic.Uint64

// hostname is the host part of unique names with '/' and ':' escaped as the maildir
// specification asks ("\057" and "\072"); ',' is escaped too because it separates the
// size field.
var hostname = func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	r := strings.NewReplacer("/", `\057`, ":", `\072`, ",", `\054`)
	return r.Replace(h)
}()

// NewKey returns a fresh unique base name in the modern maildir style
// "SECONDS.MmicrosPpidQseq.host". Size is added by Deliver.
func NewKey() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), seq.Add(1), hostname)
}

// Deliver writes the message from r into the maildir: into tmp first, fsynced, then moved
// into new without replacing any file (renameat2 RENAME_NOREPLACE, else link, else rename),
// and the new directory fsynced, so that once Deliver returns the message survives a
// crash. The key it returns carries the size as ",S=size" (Dovecot reads it to avoid a
// stat).
func (d Dir) Deliver(r io.Reader) (key string, err error) {
	return d.DeliverTo(r, New, "", time.Time{})
}

// DeliverTo is Deliver with a choice of destination: New (flags must be empty) or Cur with
// the given flags (as an IMAP APPEND with flags does), and a modification time when mtime
// is not zero. The time is set on the file in tmp, before it appears in new or cur: a
// reader that indexes the folder meanwhile (another session's sync) takes the received
// date from the mtime, and must never see the moment of writing instead.
func (d Dir) DeliverTo(r io.Reader, sub string, flags Flags, mtime time.Time) (key string, err error) {
	return d.DeliverAnnounced(r, sub, flags, mtime, nil)
}

// DeliverAnnounced is DeliverTo calling announce (when not nil) with the message's key
// just before the file appears in new or cur, so that the caller can tell its own file
// from one another program dropped there while it is not indexed yet.
func (d Dir) DeliverAnnounced(r io.Reader, sub string, flags Flags, mtime time.Time, announce func(key string)) (key string, err error) {
	if sub != New && sub != Cur {
		return "", fmt.Errorf("maildir: deliver into %q: must be new or cur", sub)
	}
	if sub == New && flags != "" {
		return "", errors.New("maildir: flags can only be set on delivery into cur")
	}
	base := NewKey()
	tmpPath := d.Path(Tmp, base)
	f, err := os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildir: create %s: %w", tmpPath, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmpPath)
		}
	}()
	n, err := io.Copy(f, r)
	if err != nil {
		f.Close()
		return "", fmt.Errorf("maildir: write %s: %w", tmpPath, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("maildir: fsync %s: %w", tmpPath, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("maildir: close %s: %w", tmpPath, err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmpPath, mtime, mtime); err != nil {
			return "", fmt.Errorf("maildir: set the time of %s: %w", tmpPath, err)
		}
	}
	key = base + ",S=" + strconv.FormatInt(n, 10)
	name := key
	if sub == Cur {
		name = FormatName(key, flags)
	}
	dst := d.Path(sub, name)
	if announce != nil {
		announce(key)
	}
	// The specification asks for link+unlink so that an existing name is never
	// overwritten; renameat2(RENAME_NOREPLACE) does the same in one system call where the
	// kernel and file system have it. Some file systems lack hard links, so a plain rename
	// is the last fallback (our names are unique per process, pid and counter).
	if err := renameNoReplace(tmpPath, dst); err == nil {
		// moved
	} else if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("maildir: deliver %s: %w", dst, err)
	} else if err := os.Link(tmpPath, dst); err == nil {
		_ = os.Remove(tmpPath)
	} else if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("maildir: deliver %s: %w", dst, err)
	} else if err := os.Rename(tmpPath, dst); err != nil {
		return "", fmt.Errorf("maildir: move %s to %s: %w", tmpPath, dst, err)
	}
	if err := syncDir(filepath.Join(string(d), sub)); err != nil {
		return "", err
	}
	return key, nil
}

// syncDir makes the entries created in directory p so far durable. Concurrent deliveries
// into the same directory share fsyncs (group commit, internal/groupsync): a caller waits
// for an fsync that started after its own link, and whoever finds none running starts
// it. Twenty deliveries into one busy mailbox then cost a couple of directory fsyncs,
// not twenty.
func syncDir(p string) error {
	g, ok := dirSyncs.Load(p)
	if !ok {
		g, _ = dirSyncs.LoadOrStore(p, groupsync.New(func() error { return fsyncDir(p) }))
	}
	return g.(*groupsync.Syncer).Sync()
}

// dirSyncs holds one groupsync.Syncer per directory ever synced (a few dozen bytes each).
var dirSyncs sync.Map

func fsyncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("maildir: open dir %s: %w", p, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("maildir: fsync dir %s: %w", p, err)
	}
	return nil
}

// Entry is one message file found by Scan.
type Entry struct {
	Sub  string // New or Cur
	Name Name   // the parsed file name
}

// File is the entry's file name within its subdirectory.
func (e Entry) File() string { return e.Name.String() }

// Scan lists the messages in new and cur. Files whose names do not parse (dot files,
// editor leftovers) are skipped. Entries come sorted by key.
func (d Dir) Scan() ([]Entry, error) {
	var out []Entry
	for _, sub := range []string{New, Cur} {
		p := filepath.Join(string(d), sub)
		des, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("maildir: scan %s: %w", p, err)
		}
		for _, de := range des {
			if !de.Type().IsRegular() {
				continue
			}
			n, err := ParseName(de.Name())
			if err != nil {
				continue
			}
			out = append(out, Entry{Sub: sub, Name: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return KeyLess(out[i].Name.Key, out[j].Name.Key) })
	return out, nil
}

// KeyLess orders keys by delivery time: the leading seconds, then the M (microseconds)
// and Q (counter) fields numerically, so "M99999" sorts before "M100000"; keys of other
// formats fall back to string order.
func KeyLess(a, b string) bool {
	sa, ma, qa, oka := keyTime(a)
	sb, mb, qb, okb := keyTime(b)
	if oka && okb {
		if sa != sb {
			return sa < sb
		}
		if ma != mb {
			return ma < mb
		}
		if qa != qb {
			return qa < qb
		}
	}
	return a < b
}

func keyTime(k string) (sec, micro, q int64, ok bool) {
	head, rest, found := strings.Cut(k, ".")
	if !found {
		return 0, 0, 0, false
	}
	sec, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return 0, 0, 0, false
	}
	mid, _, _ := strings.Cut(rest, ".")
	num := func(tag byte) int64 {
		i := strings.IndexByte(mid, tag)
		if i < 0 {
			return -1
		}
		j := i + 1
		for j < len(mid) && mid[j] >= '0' && mid[j] <= '9' {
			j++
		}
		v, err := strconv.ParseInt(mid[i+1:j], 10, 64)
		if err != nil {
			return -1
		}
		return v
	}
	return sec, num('M'), num('Q'), true
}

// Find locates the file for key, looking in cur then new.
func (d Dir) Find(key string) (Entry, error) {
	if err := validKey(key); err != nil {
		return Entry{}, err
	}
	if fi, err := os.Lstat(d.Path(New, key)); err == nil && fi.Mode().IsRegular() {
		return Entry{Sub: New, Name: Name{Key: key}}, nil
	}
	des, err := os.ReadDir(filepath.Join(string(d), Cur))
	if err != nil {
		return Entry{}, fmt.Errorf("maildir: find %s: %w", key, err)
	}
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), key) {
			continue
		}
		n, err := ParseName(de.Name())
		if err == nil && n.Key == key {
			return Entry{Sub: Cur, Name: n}, nil
		}
	}
	return Entry{}, fmt.Errorf("%w: %s in %s", ErrNotFound, key, d)
}

// Open opens the entry's file for reading.
func (d Dir) Open(e Entry) (*os.File, error) {
	f, err := os.Open(d.Path(e.Sub, e.File()))
	if err != nil {
		return nil, fmt.Errorf("maildir: open: %w", err)
	}
	return f, nil
}

// SetFlags moves the message to cur (from new if needed) with the given flags, by rename,
// and returns the new entry. Setting the flags a message already has is a no-op.
func (d Dir) SetFlags(e Entry, flags Flags) (Entry, error) {
	flags = NormalizeFlags(string(flags))
	ne := Entry{Sub: Cur, Name: Name{Key: e.Name.Key, Size: e.Name.Size, HasInfo: true, Flags: flags}}
	if e.Sub == Cur && e.Name.HasInfo && e.Name.Flags == flags && e.Name.Info == "" {
		return e, nil
	}
	from, to := d.Path(e.Sub, e.File()), d.Path(Cur, ne.File())
	if err := os.Rename(from, to); err != nil {
		return e, fmt.Errorf("maildir: rename %s to %s: %w", from, to, err)
	}
	return ne, nil
}

// Remove deletes the message file.
func (d Dir) Remove(e Entry) error {
	p := d.Path(e.Sub, e.File())
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("maildir: remove %s: %w", p, err)
	}
	return nil
}

// CleanTmp removes files in tmp not modified for longer than maxAge (the specification
// suggests 36 hours): leftovers of deliveries interrupted by a crash. A file whose name
// says it was made recently is young whatever its mtime: DeliverTo dates a file in tmp
// (an APPEND of an old message) just before moving it.
func (d Dir) CleanTmp(maxAge time.Duration) (int, error) {
	p := filepath.Join(string(d), Tmp)
	des, err := os.ReadDir(p)
	if err != nil {
		return 0, fmt.Errorf("maildir: clean %s: %w", p, err)
	}
	n := 0
	for _, de := range des {
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < maxAge {
			continue
		}
		if sec, _, ok := strings.Cut(de.Name(), "."); ok {
			if n, err := strconv.ParseInt(sec, 10, 64); err == nil && time.Since(time.Unix(n, 0)) < maxAge {
				continue
			}
		}
		if os.Remove(filepath.Join(p, de.Name())) == nil {
			n++
		}
	}
	return n, nil
}
