package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Delimiter separates levels of mailbox names as IMAP clients see them ("Lists/go").
// On disk the levels are joined with '.' as Maildir++ does (".Lists.go").
const Delimiter = '/'

// Inbox is the name of the user's main mailbox, the maildir root.
const Inbox = "INBOX"

// Limits on names.
const (
	MaxMailboxNameLen = 200 // bytes, whole name
	MaxUserNameLen    = 254
)

// ErrBadName is returned for user and mailbox names that are unsafe or invalid.
var ErrBadName = errors.New("store: invalid name")

// CanonicalMailbox validates an IMAP mailbox name and returns its canonical form ("inbox"
// in any case becomes "INBOX"). Names are split at Delimiter; each level must be
// non-empty, valid UTF-8, without '.', '\\', control characters, and may not be "." or
// "..", so a name can never leave the user's maildir (Maildir++ ".A.B" folders).
func CanonicalMailbox(name string) (string, error) {
	if name == "" || len(name) > MaxMailboxNameLen {
		return "", fmt.Errorf("%w: mailbox name length %d", ErrBadName, len(name))
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: mailbox name %q is not UTF-8", ErrBadName, name)
	}
	parts := strings.Split(name, string(Delimiter))
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("%w: empty level in mailbox name %q", ErrBadName, name)
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f || r == '.' || r == '\\' || r == '/' || r == '*' || r == '%' || (r >= 0x80 && r < 0xa0) {
				return "", fmt.Errorf("%w: mailbox name %q contains %q", ErrBadName, name, r)
			}
		}
		if i == 0 && strings.EqualFold(p, Inbox) {
			parts[0] = Inbox
		}
	}
	return strings.Join(parts, string(Delimiter)), nil
}

// folderDir is the directory of a mailbox below the user's maildir root.
func folderDir(root, canonical string) string {
	if canonical == Inbox {
		return root
	}
	return filepath.Join(root, "."+strings.ReplaceAll(canonical, string(Delimiter), "."))
}

// mailboxFromDir is the inverse of folderDir for a directory entry name (".A.B" → "A/B").
func mailboxFromDir(entry string) (string, bool) {
	if len(entry) < 2 || entry[0] != '.' || entry == ".." {
		return "", false
	}
	n, err := CanonicalMailbox(strings.ReplaceAll(entry[1:], ".", string(Delimiter)))
	if err != nil || n == Inbox {
		return "", false
	}
	return n, true
}

// userPath splits a user name into the directory levels DOMAIN/LOCAL below the store root.
// A name without '@' lives under "localhost".
func userPath(user string) (domain, local string, err error) {
	if user == "" || len(user) > MaxUserNameLen || !utf8.ValidString(user) {
		return "", "", fmt.Errorf("%w: user name %q", ErrBadName, user)
	}
	user = strings.ToLower(user)
	local, domain, ok := strings.Cut(user, "@")
	if !ok {
		domain = "localhost"
	}
	for _, p := range []string{local, domain} {
		if p == "" || p[0] == '.' || strings.ContainsAny(p, "/\\@") {
			return "", "", fmt.Errorf("%w: user name %q", ErrBadName, user)
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f {
				return "", "", fmt.Errorf("%w: user name %q contains a control character", ErrBadName, user)
			}
		}
	}
	return domain, local, nil
}
