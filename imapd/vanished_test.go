package imapd

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/portcullis-mail/portcullis/store"
)

func TestVanishedWalks(t *testing.T) {
	set := func(s string) imap.UIDSet {
		ss, err := imapParseUIDSet(s)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	// Ranges come resolved, ordered and merged, whatever order and direction they had.
	if got := sortedRanges(set("9:7,1,3:*,2"), 5); !slices.Equal(got, []uidRange{{1, 5}, {7, 9}}) {
		t.Errorf("sortedRanges = %v", got)
	}
	if got := sortedRanges(set("10:12,1:2,4,5:6"), 20); !slices.Equal(got, []uidRange{{1, 2}, {4, 6}, {10, 12}}) {
		t.Errorf("sortedRanges = %v", got)
	}
	if got := sortedRanges(set("*"), 0); len(got) != 0 {
		t.Errorf("sortedRanges(*) of an empty mailbox = %v", got)
	}
	ranges := sortedRanges(set("2:4,8,20:*"), 30)
	if got := uidsIn([]uint32{1, 2, 4, 5, 8, 9, 19, 25, 31}, ranges); !slices.Equal(got, []uint32{2, 4, 8, 25}) {
		t.Errorf("uidsIn = %v", got)
	}
	for _, c := range []struct {
		set     string
		present []uint32
		top     uint32
		want    string
	}{
		{"1:10", []uint32{2, 3, 7}, 10, "1,4:6,8:10"},
		{"1:10", []uint32{2, 3, 7}, 8, "1,4:6,8"},
		{"5:6", []uint32{2, 3, 7}, 10, "5:6"},
		{"2:3,7", []uint32{2, 3, 7}, 10, ""},
		{"1:*", nil, 4, "1:4"},
		// A client may name every UID there is: the answer stays ranges.
		{"1:4294967295", []uint32{3, 4294967295}, 4294967295, "1:2,4:4294967294"},
		{"4294967295", []uint32{4294967295}, 4294967295, ""},
	} {
		got := absentIn(sortedRanges(set(c.set), c.top), c.present, c.top)
		if got.String() != c.want {
			t.Errorf("absentIn(%s, %v, top %d) = %q; want %q", c.set, c.present, c.top, got.String(), c.want)
		}
	}
	if got := rangesOf([]uint32{1, 2, 3, 5, 7, 8}).String(); got != "1:3,5,7:8" {
		t.Errorf("rangesOf = %q", got)
	}
}

func imapParseUIDSet(s string) (imap.UIDSet, error) {
	var out imap.UIDSet
	for _, part := range strings.Split(s, ",") {
		lo, hi, _ := strings.Cut(part, ":")
		if hi == "" {
			hi = lo
		}
		n := func(x string) imap.UID {
			if x == "*" {
				return 0
			}
			var v uint64
			for _, c := range x {
				v = v*10 + uint64(c-'0')
			}
			return imap.UID(v)
		}
		out = append(out, imap.UIDRange{Start: n(lo), Stop: n(hi)})
	}
	return out, nil
}

// Once the expunges a client missed were pruned (store.Config.ExpungesKept), SELECT
// (QRESYNC ...) and UID FETCH (VANISHED) answer every UID of its set no longer in the
// mailbox, so that it still drops each message it holds that is gone (RFC 7162 §3.2.5.2);
// a client whose modseq is after the horizon still gets only what was expunged since.
func TestQResyncAfterPrune(t *testing.T) {
	e := startWith(t, Config{Trusted: true}, store.Config{ExpungesKept: 2})
	for range 10 {
		e.deliver(t, "alice@example.org", msgA)
	}
	a := dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("ENABLE QRESYNC")
	uv, h := selectState(t, a.ok("SELECT INBOX"))
	a.ok("LOGOUT")

	// Five expunges, one at a time: the first ones' tombstones are pruned.
	b := dialRaw(t, e.addr)
	b.ok(`LOGIN alice@example.org "secret pw"`)
	b.ok("ENABLE QRESYNC")
	b.ok("SELECT INBOX")
	var after3 uint64
	for _, uid := range []int{2, 3, 5, 8, 9} {
		b.ok(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid)
		b.ok("UID EXPUNGE %d", uid)
		if uid == 5 {
			for _, l := range b.ok("STATUS INBOX (HIGHESTMODSEQ)") {
				after3 = modseqOf(t, strings.Replace(l, "HIGHESTMODSEQ", "MODSEQ", 1))
			}
		}
	}

	vanished := func(lines []string) string {
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "* VANISHED (EARLIER) "); ok {
				return v
			}
		}
		return ""
	}
	a = dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("ENABLE QRESYNC")
	if got := vanished(a.ok("SELECT INBOX (QRESYNC (%d %d 1:10))", uv, h)); got != "2:3,5,8:9" {
		t.Errorf("SELECT QRESYNC from before the horizon: VANISHED (EARLIER) %q; want 2:3,5,8:9", got)
	}
	// Without known UIDs the set is every UID up to UIDNEXT-1.
	if got := vanished(a.ok("SELECT INBOX (QRESYNC (%d %d))", uv, h)); got != "2:3,5,8:9" {
		t.Errorf("SELECT QRESYNC without known UIDs: VANISHED (EARLIER) %q", got)
	}
	if got := vanished(a.ok("UID FETCH 4:9 (FLAGS) (CHANGEDSINCE %d VANISHED)", h)); got != "5,8:9" {
		t.Errorf("UID FETCH VANISHED from before the horizon: %q; want 5,8:9", got)
	}
	// After the horizon: only the expunges since (8 and 9), from the tombstones.
	if got := vanished(a.ok("SELECT INBOX (QRESYNC (%d %d 1:10))", uv, after3)); got != "8:9" {
		t.Errorf("SELECT QRESYNC after the horizon: VANISHED (EARLIER) %q; want 8:9", got)
	}
}
