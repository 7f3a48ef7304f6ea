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
//
// The pattern's length is the client's (up to a command line, 64 KiB, or a literal):
// a longer one than a name could match is first compacted, a run of wildcards being one
// ("**", "*%" and "%*" match what "*" does, "%%" what "%" does), so that the cost is
// O(len(name)²) whatever the client sends (before, LIST "" <60 KiB of "*"> took 47 ms
// per mailbox: most of a minute of CPU for a user with 1000 folders).
func wildMatch(name string, delim byte, pattern string) bool {
	if len(pattern) > 2*len(name)+1 {
		var lits int
		if pattern, lits = compactPattern(pattern); lits > len(name) {
			return false // each literal byte matches one byte of the name
		}
	}
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

// compactPattern returns pattern with each run of wildcards made one: "*" if the run has
// a "*", else "%"; and the number of its other bytes. The compacted pattern is at most
// 2·lits+1 bytes long.
func compactPattern(pattern string) (string, int) {
	b := make([]byte, 0, len(pattern))
	lits := 0
	for i := 0; i < len(pattern); {
		if c := pattern[i]; c != '*' && c != '%' {
			b = append(b, c)
			lits++
			i++
			continue
		}
		star := false
		for ; i < len(pattern) && (pattern[i] == '*' || pattern[i] == '%'); i++ {
			star = star || pattern[i] == '*'
		}
		if star {
			b = append(b, '*')
		} else {
			b = append(b, '%')
		}
	}
	return string(b), lits
}
