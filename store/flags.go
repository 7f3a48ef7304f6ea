package store

import (
	"sort"
	"strings"

	"github.com/portcullis-mail/portcullis/store/maildir"
)

// IMAP system flags (RFC 9051 §2.3.2) and the maildir letters they map to.
const (
	FlagSeen      = `\Seen`
	FlagAnswered  = `\Answered`
	FlagFlagged   = `\Flagged`
	FlagDeleted   = `\Deleted`
	FlagDraft     = `\Draft`
	FlagForwarded = `$Forwarded` // maildir 'P' (passed)
	FlagJunk      = `$Junk`
	FlagNotJunk   = `$NotJunk`
)

var flagLetters = map[string]byte{
	strings.ToLower(FlagSeen):      maildir.FlagSeen,
	strings.ToLower(FlagAnswered):  maildir.FlagReplied,
	strings.ToLower(FlagFlagged):   maildir.FlagFlagged,
	strings.ToLower(FlagDeleted):   maildir.FlagTrashed,
	strings.ToLower(FlagDraft):     maildir.FlagDraft,
	strings.ToLower(FlagForwarded): maildir.FlagPassed,
}

var letterFlags = map[byte]string{
	maildir.FlagSeen: FlagSeen, maildir.FlagReplied: FlagAnswered, maildir.FlagFlagged: FlagFlagged,
	maildir.FlagTrashed: FlagDeleted, maildir.FlagDraft: FlagDraft, maildir.FlagPassed: FlagForwarded,
}

var systemFlags = map[string]string{
	`\seen`: FlagSeen, `\answered`: FlagAnswered, `\flagged`: FlagFlagged,
	`\deleted`: FlagDeleted, `\draft`: FlagDraft, `$forwarded`: FlagForwarded,
	`$junk`: FlagJunk, `$notjunk`: FlagNotJunk,
}

// MaxKeywords bounds the number of flags on one message.
const MaxKeywords = 64

// NormalizeFlags returns flags deduplicated case-insensitively, system flags in their
// canonical spelling, keywords as first given, sorted, invalid atoms dropped (\Recent
// cannot be set by clients, RFC 3501 §2.3.2).
func NormalizeFlags(flags []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		lf := strings.ToLower(f)
		if canon, ok := systemFlags[lf]; ok {
			f = canon
		} else if !validKeyword(f) {
			continue
		}
		if seen[lf] {
			continue
		}
		seen[lf] = true
		out = append(out, f)
		if len(out) == MaxKeywords {
			break
		}
	}
	sort.Strings(out)
	return out
}

func validKeyword(f string) bool {
	if f == "" || len(f) > 100 {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		// RFC 3501 atom-char, no '\\' (reserved for system flags).
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// hasFlag reports whether flags (normalized) contain f, case-insensitively.
func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// maildirFlags turns IMAP flags into maildir letters; keywords stay in the index only.
func maildirFlags(flags []string) maildir.Flags {
	var b []byte
	for _, f := range flags {
		if c, ok := flagLetters[strings.ToLower(f)]; ok {
			b = append(b, c)
		}
	}
	return maildir.NormalizeFlags(string(b))
}

// mergeMaildirFlags returns the IMAP flags for a file whose maildir letters are mf,
// keeping the keywords of old (the index) and taking system flags from the file name.
func mergeMaildirFlags(old []string, mf maildir.Flags) []string {
	var out []string
	for _, f := range old {
		if _, ok := flagLetters[strings.ToLower(f)]; !ok {
			out = append(out, f)
		}
	}
	for i := 0; i < len(mf); i++ {
		if f, ok := letterFlags[mf[i]]; ok {
			out = append(out, f)
		}
	}
	return NormalizeFlags(out)
}

func joinFlags(f []string) string { return strings.Join(f, " ") }

func splitFlags(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Fields(s)
}
