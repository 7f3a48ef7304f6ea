package address

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Sizes of an address (RFC 5321 §4.5.3.1.1 and §4.5.3.1.2).
const (
	maxLocalLen  = 64
	maxDomainLen = 253
	// MaxLen is the longest address Normalize accepts: a 64-octet local part, "@" and a
	// 253-octet domain.
	MaxLen = maxLocalLen + 1 + maxDomainLen
)

// ErrInvalid is returned (wrapped) by Normalize for a name that is not a mailbox address
// portcullis stores users under.
var ErrInvalid = errors.New("not a valid user address")

// idnaProfile maps a domain to its A-label form (RFC 5891 lookup rules).
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// Normalize returns the canonical form of a user address, the key under which
// users are stored and the name an Authenticator returns:
//
//   - the domain is lower-cased and IDNs are converted to A-labels (xn--…), with a
//     trailing dot removed;
//   - the local part is lower-cased too (Unicode-aware, after NFC normalisation): mailbox
//     names in portcullis are case-insensitive, as Postfix and Dovecot lookups are in
//     practice, although RFC 5321 §2.4 allows a server to distinguish them;
//   - the local part must be a dot-atom (RFC 5322 §3.2.3) of atext, with UTF-8 allowed
//     (RFC 6531 §3.3); quoted local parts, comments, spaces and control characters are
//     refused, and so are "@" "%" "!" (source routes);
//   - sizes follow RFC 5321 §4.5.3.1.1 (local part ≤ 64 octets, domain ≤ 253).
func Normalize(s string) (string, error) {
	if len(s) > MaxLen+1 || !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %.80q: too long or not UTF-8", ErrInvalid, s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", fmt.Errorf("%w: %q: want local@domain", ErrInvalid, s)
	}
	local, err := normalizeLocal(s[:at])
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalid, s, err)
	}
	domain, err := NormalizeDomain(s[at+1:])
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalid, s, err)
	}
	return local + "@" + domain, nil
}

func normalizeLocal(l string) (string, error) {
	// Lower-casing can denormalise: normalise again after it, so the result is stable.
	l = norm.NFC.String(strings.ToLower(norm.NFC.String(l)))
	if l == "" || len(l) > maxLocalLen {
		return "", errors.New("local part empty or longer than 64 octets")
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return "", errors.New("local part has a leading, trailing or double dot")
	}
	for _, r := range l {
		if !isAtext(r) && r != '.' {
			return "", fmt.Errorf("character %q not allowed in a local part", r)
		}
	}
	return l, nil
}

// isAtext reports whether r may appear in a dot-atom: RFC 5322 §3.2.3 atext, minus the
// routing characters "%" and "!", plus non-ASCII letters, marks, numbers, symbols and
// punctuation (RFC 6531 §3.3 UTF8-non-ascii, without controls, spaces or format runes).
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r < utf8.RuneSelf:
		return strings.ContainsRune("#$&'*+-/=?^_`{|}~", r)
	case r == utf8.RuneError:
		return false
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.S, unicode.P)
}

// NormalizeDomain returns the canonical form of a domain as Normalize makes it: lower
// case, A-labels for IDNs, no trailing dot, checked label by label.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", errors.New("empty domain")
	}
	a, err := idnaProfile.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain: %v", err)
	}
	a = strings.ToLower(a)
	if len(a) > maxDomainLen {
		return "", errors.New("domain longer than 253 octets")
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad domain label %q", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("bad character %q in domain", c)
			}
		}
	}
	return a, nil
}
