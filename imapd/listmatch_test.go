package imapd

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"
)

// matchList answers as go-imap's imapserver.MatchList, which LIST used while imapserver
// served IMAP (the oracle here), on the cases of RFC 3501 §6.3.8 and fuzzed names; and a
// pattern of many wildcards, on which a backtracking matcher takes exponential time,
// answers at once.
func TestMatchList(t *testing.T) {
	names := []string{"INBOX", "INBOX/a", "INBOX/a/b", "Archive/2024/x", "a%b", "a*b", "", "/", "a//b", "Été/ß"}
	cases := [][2]string{{"", "*"}, {"", "%"}, {"", "INBOX/%"}, {"INBOX", "%"}, {"INBOX/", "*"},
		{"", "/INBOX"}, {"Archive", "/%/%/%"}, {"", "%/%"}, {"", "a%"}, {"", "*b"}, {"", "A*"},
		{"", "Été/*"}, {"", "%%/%"}, {"x", "/*"}, {"", "a//b"}, {"", "a/%/b"}}
	for _, n := range names {
		for _, c := range cases {
			if got, want := matchList(n, '/', c[0], c[1]), imapserver.MatchList(n, '/', c[0], c[1]); got != want {
				t.Errorf("matchList(%q, %q, %q) = %v, want %v", n, c[0], c[1], got, want)
			}
		}
	}
	if matchList(strings.Repeat("a", 5000), '/', "", strings.Repeat("*a", 200)+"*b") {
		t.Error("a name of a's matched a pattern that ends in b")
	}
	// Patterns longer than the name, compacted first: the same answers.
	long := []struct {
		name, pattern string
		want          bool
	}{
		{"a/b", strings.Repeat("*", 1000), true},
		{"a/b", strings.Repeat("%", 1000), false},
		{"a/b", strings.Repeat("%", 500) + "/" + strings.Repeat("%*", 500), true},
		{"a/b", "%" + strings.Repeat("%%", 500) + "b", false},
		{"ab", strings.Repeat("*%", 300) + "a" + strings.Repeat("%", 300) + "b", true},
		{"ab", strings.Repeat("a", 300), false},
		{"ab", "a" + strings.Repeat("*", 300) + "bc", false},
	}
	for _, c := range long {
		if got := matchList(c.name, '/', "", c.pattern); got != c.want || got != imapserver.MatchList(c.name, '/', "", c.pattern) {
			t.Errorf("matchList(%q, %.20q...) = %v, want %v", c.name, c.pattern, got, c.want)
		}
	}
}

// INBOX is case-insensitive in LIST's reference and pattern as in every other command
// (RFC 3501 §5.1): as the first level of a name, not a wildcard's match, not elsewhere.
// Before, LIST "" "inbox/%" listed none of the INBOX/x that SELECT "inbox/x" opens.
func TestMatchListInboxCase(t *testing.T) {
	for _, c := range []struct {
		name, ref, pattern string
		want               bool
	}{
		{"INBOX/a", "", "inbox/%", true},
		{"INBOX/a", "", "InBox/*", true},
		{"INBOX", "", "Inbox", true},
		{"INBOX/a", "inbox", "%", true},
		{"INBOX/a", "inbox/", "a", true},
		{"INBOX/a/b", "", "/inbox/a/%", true},
		{"INBOX/a", "", "inboxes/%", false},
		{"Archive/inbox", "", "Archive/INBOX", false}, // only the first level
		{"inboxes", "", "INBOXES", false},
		{"INBOX", "", "inb*", false}, // a wildcard matches bytes as they are
	} {
		if got := matchList(c.name, '/', c.ref, c.pattern); got != c.want {
			t.Errorf("matchList(%q, %q, %q) = %v, want %v", c.name, c.ref, c.pattern, got, c.want)
		}
	}
}

func FuzzMatchList(f *testing.F) {
	f.Add("INBOX/a/b", "", "INBOX/%")
	f.Add("a/b", "a", "*")
	f.Add("a%b", "", "a%%b")
	f.Fuzz(func(t *testing.T, name, ref, pattern string) {
		if strings.Count(pattern, "*")+strings.Count(pattern, "%") > 6 || len(name) > 64 {
			return // the oracle backtracks: exponential in the wildcards
		}
		if inboxCase(strings.TrimPrefix(pattern, "/"), '/') != strings.TrimPrefix(pattern, "/") || inboxCase(ref, '/') != ref {
			return // an "inbox" in another case: the oracle does not know INBOX (TestMatchListInboxCase)
		}
		if got, want := matchList(name, '/', ref, pattern), imapserver.MatchList(name, '/', ref, pattern); got != want {
			t.Errorf("matchList(%q, %q, %q) = %v, want %v", name, ref, pattern, got, want)
		}
	})
}

// BenchmarkMatchList compares matchList with imapserver.MatchList, which LIST used
// before, on a usual pattern and on one with many wildcards; and matchList alone on a
// pattern of 60 KiB of "*" (a command line's worth), which the oracle never finishes.
func BenchmarkMatchList(b *testing.B) {
	for _, c := range []struct{ name, mailbox, pattern string }{
		{"percent", "Archive/2024/Projects/portcullis/imapd", "Archive/%/Projects/%"},
		{"wildcards", strings.Repeat("a", 24), "*a*a*a*a*a*x"},
		{"long", strings.Repeat("a", 199), strings.Repeat("*", 60<<10)},
	} {
		name := c.mailbox
		b.Run(c.name+"/own", func(b *testing.B) {
			for b.Loop() {
				matchList(name, '/', "", c.pattern)
			}
		})
		if c.name == "long" {
			continue
		}
		b.Run(c.name+"/imapserver", func(b *testing.B) {
			for b.Loop() {
				imapserver.MatchList(name, '/', "", c.pattern)
			}
		})
	}
}
