package maildir

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Standard maildir flags (the letters after ":2,"). Lowercase letters a–z are used by
// Dovecot for keywords and are kept as they are.
const (
	FlagPassed  = 'P' // resent/forwarded/bounced
	FlagReplied = 'R'
	FlagSeen    = 'S'
	FlagTrashed = 'T' // IMAP \Deleted
	FlagDraft   = 'D'
	FlagFlagged = 'F'
)

// Flags is a set of flag letters, kept in ASCII order without duplicates as the
// specification requires.
type Flags string

// NormalizeFlags sorts the letters of s, drops duplicates and anything that is not an
// ASCII letter.
func NormalizeFlags(s string) Flags {
	var set [128]bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') {
			set[c] = true
		}
	}
	b := make([]byte, 0, len(s))
	for c := range set {
		if set[c] {
			b = append(b, byte(c))
		}
	}
	return Flags(b)
}

// Has reports whether f contains the flag letter c.
func (f Flags) Has(c byte) bool { return strings.IndexByte(string(f), c) >= 0 }

// With returns f with c added.
func (f Flags) With(c byte) Flags { return NormalizeFlags(string(f) + string(c)) }

// Without returns f with c removed.
func (f Flags) Without(c byte) Flags {
	return Flags(strings.ReplaceAll(string(f), string(c), ""))
}

// MaxNameLen bounds file names accepted by ParseName (most file systems allow 255 bytes).
const MaxNameLen = 255

// Name is a parsed maildir file name: KEY[:INFO].
type Name struct {
	Key     string // the unique part, before ':'
	Size    int64  // from ",S=size" in the key; -1 when absent
	HasInfo bool   // a ':' was present
	Flags   Flags  // for ":2,FLAGS" info
	Info    string // the raw info when it is not ":2," (experimental ":1," or unknown); kept verbatim
}

// String formats the name back into a file name.
func (n Name) String() string {
	if !n.HasInfo {
		return n.Key
	}
	if n.Info != "" {
		return n.Key + ":" + n.Info
	}
	return FormatName(n.Key, n.Flags)
}

// FormatName returns the cur file name for key with flags: KEY ":2," FLAGS.
func FormatName(key string, flags Flags) string {
	return key + ":2," + string(NormalizeFlags(string(flags)))
}

var errBadName = errors.New("maildir: bad file name")

func validKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", errBadName)
	case key[0] == '.':
		return fmt.Errorf("%w: %q starts with a dot", errBadName, key)
	case len(key) > MaxNameLen:
		return fmt.Errorf("%w: key longer than %d bytes", errBadName, MaxNameLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '/' || c == ':' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %q contains %q", errBadName, key, c)
		}
	}
	return nil
}

// ParseName parses a file name found in new or cur. It rejects names that cannot be
// message files (empty, dot files, '/', control characters, overlong); the flags of a
// ":2," info are normalized (sorted, duplicates dropped) and must be ASCII letters.
func ParseName(s string) (Name, error) {
	if len(s) > MaxNameLen {
		return Name{}, fmt.Errorf("%w: longer than %d bytes", errBadName, MaxNameLen)
	}
	key, info, hasInfo := strings.Cut(s, ":")
	if err := validKey(key); err != nil {
		return Name{}, err
	}
	n := Name{Key: key, Size: -1, HasInfo: hasInfo}
	if i := strings.Index(key, ",S="); i >= 0 {
		v := key[i+3:]
		if j := strings.IndexByte(v, ','); j >= 0 {
			v = v[:j]
		}
		if sz, err := strconv.ParseInt(v, 10, 64); err == nil && sz >= 0 {
			n.Size = sz
		}
	}
	if !hasInfo {
		return n, nil
	}
	if info == "" {
		return Name{}, fmt.Errorf("%w: empty info after ':' in %q", errBadName, s)
	}
	for i := 0; i < len(info); i++ {
		if c := info[i]; c == '/' || c < 0x20 || c == 0x7f {
			return Name{}, fmt.Errorf("%w: info %q contains %q", errBadName, info, c)
		}
	}
	if rest, ok := strings.CutPrefix(info, "2,"); ok {
		for i := 0; i < len(rest); i++ {
			c := rest[i]
			if !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
				return Name{}, fmt.Errorf("%w: flag %q in %q", errBadName, c, s)
			}
		}
		n.Flags = NormalizeFlags(rest)
		return n, nil
	}
	n.Info = info
	return n, nil
}
