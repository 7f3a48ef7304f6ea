package imapd

import (
	"errors"
	"strings"
)

// numKind says whether a command's numbers are sequence numbers or UIDs (UID FETCH,
// UID SEARCH, UID SORT, UID THREAD).
type numKind int

const (
	numSeq numKind = iota
	numUID
)

// errAuthFailed answers LOGIN and AUTHENTICATE with bad credentials: NO
// [AUTHENTICATIONFAILED] (RFC 5530 §3), the same whatever was wrong, so that a client
// learns nothing about which user names exist.
var errAuthFailed = errors.New("imapd: authentication failed")

// matchList reports whether the mailbox name matches a LIST reference and pattern (RFC
// 3501 §6.3.8, RFC 9051 §6.3.9): "*" matches any run of characters, "%" any run without
// the hierarchy delimiter, and any other character itself. A pattern that starts with
// the delimiter names mailboxes from the root and the reference is left out; otherwise
// the reference, ended with a delimiter, must come first in the name.
func matchList(name string, delim byte, ref, pattern string) bool {
	if strings.HasPrefix(pattern, string(delim)) {
		ref, pattern = "", pattern[1:]
	}
	if ref == "" {
		pattern = inboxCase(pattern, delim)
	} else {
		if !strings.HasSuffix(ref, string(delim)) {
			ref += string(delim)
		}
		ref = inboxCase(ref, delim)
		var ok bool
		if name, ok = strings.CutPrefix(name, ref); !ok {
			return false
		}
	}
	return wildMatch(name, delim, pattern)
}

// inboxCase writes a first level "inbox" in any case as INBOX: the name is
// case-insensitive (RFC 3501 §5.1, RFC 9051 §5.1), and the store reads the first level
// of its children's names so too (store.CanonicalMailbox): LIST "" "inbox/%" lists
// the folders SELECT "inbox/x" opens.
func inboxCase(s string, delim byte) string {
	if len(s) >= 5 && strings.EqualFold(s[:5], "INBOX") && (len(s) == 5 || s[5] == delim) {
		return "INBOX" + s[5:]
	}
	return s
}

// wildMatch matches name against a LIST pattern, one pattern byte at a time over the set
// of name prefixes the pattern read so far matches: O(len(name)·len(pattern)) time
// however many wildcards the client sends (a backtracking matcher takes exponential
// time on "*a*a*a*a*a*b"). Bytes compare as bytes, which is right for UTF-8 and for
// modified UTF-7 alike.
func wildMatch(name string, delim byte, pattern string) bool {
	cur := make([]bool, len(name)+1) // cur[i]: the pattern so far matches name[:i]
	next := make([]bool, len(name)+1)
	cur[0] = true
	for k := 0; k < len(pattern); k++ {
		clear(next)
		any := false
		switch c := pattern[k]; c {
		case '*':
			on := false
			for i := range cur {
				on = on || cur[i]
				next[i] = on
			}
			any = on
		case '%':
			on := false
			for i := range cur {
				if i > 0 && name[i-1] == delim {
					on = false // % does not cross a delimiter
				}
				on = on || cur[i]
				next[i] = on
				any = any || on
			}
		default:
			for i := 0; i < len(name); i++ {
				if cur[i] && name[i] == c {
					next[i+1], any = true, true
				}
			}
		}
		if !any {
			return false
		}
		cur, next = next, cur
	}
	return cur[len(name)]
}
