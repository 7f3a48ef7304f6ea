package imapd

import (
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"
)

// VANISHED (EARLIER) for SELECT (QRESYNC ...) and UID FETCH (VANISHED) (RFC 7162
// §3.2.5.2, §3.2.6): the UIDs of the client's set expunged since its modseq. While the
// store still holds the tombstones back to that modseq, the answer is those of them in
// the set. Once they were pruned (the modseq is below the mailbox's horizon) the server
// cannot tell which were expunged when, so it answers with every UID of the set that is
// not in the mailbox: the client drops those it still holds and ignores the others. Both
// are walks of sorted lists, linear in their lengths; the set is never enumerated UID by
// UID (a client may send 1:4294967295).

// uidRange is a closed range of UIDs, lo ≤ hi.
type uidRange struct{ lo, hi uint32 }

// sortedRanges resolves set's "*" to star, orders its ranges and merges those that
// overlap or touch.
func sortedRanges(set imap.UIDSet, star uint32) []uidRange {
	out := make([]uidRange, 0, len(set))
	for _, r := range set {
		a, b := uint32(r.Start), uint32(r.Stop)
		if a == 0 {
			a = star
		}
		if b == 0 {
			b = star
		}
		if a > b {
			a, b = b, a
		}
		if b == 0 {
			continue // "*" of an empty mailbox
		}
		out = append(out, uidRange{max(a, 1), b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lo < out[j].lo })
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && uint64(r.lo) <= uint64(merged[n-1].hi)+1 {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// uidsIn returns those of uids (ascending) that fall in ranges (sorted, merged).
func uidsIn(uids []uint32, ranges []uidRange) []uint32 {
	var out []uint32
	i := 0
	for _, u := range uids {
		for i < len(ranges) && ranges[i].hi < u {
			i++
		}
		if i == len(ranges) {
			break
		}
		if u >= ranges[i].lo {
			out = append(out, u)
		}
	}
	return out
}

// absentIn returns the parts of ranges (sorted, merged) up to top that hold no UID of
// present (ascending).
func absentIn(ranges []uidRange, present []uint32, top uint32) imap.UIDSet {
	var out imap.UIDSet
	for _, r := range ranges {
		if r.lo > top {
			break
		}
		lo, hi := r.lo, min(r.hi, top)
		// The first present UID at or above lo; the walk goes on from there.
		i, _ := slices.BinarySearch(present, lo)
		for ; i < len(present) && present[i] <= hi; i++ {
			if present[i] > lo {
				out = append(out, imap.UIDRange{Start: imap.UID(lo), Stop: imap.UID(present[i] - 1)})
			}
			lo = present[i] + 1
			if lo == 0 { // present[i] was the highest UID there is
				break
			}
		}
		if lo != 0 && lo <= hi {
			out = append(out, imap.UIDRange{Start: imap.UID(lo), Stop: imap.UID(hi)})
		}
	}
	return out
}

// vanishedEarlier answers the set's UIDs expunged from the selected mailbox after modseq,
// as a UID set (see the comment at the top of this file).
func (s *session) vanishedEarlier(modseq uint64, set imap.UIDSet) (imap.UIDSet, error) {
	sel, err := s.selected()
	if err != nil {
		return nil, err
	}
	c, cancel := ctx()
	defer cancel()
	gone, complete, err := s.user.Vanished(c, sel.mb, modseq)
	if err != nil {
		return nil, s.logErr("vanished", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The UIDs this session's view has reached: every one of them was assigned, and the
	// client can know no other.
	top := max(sel.mb.UIDNext-1, sel.maxUID())
	ranges := sortedRanges(set, top)
	if !complete {
		return absentIn(ranges, sel.uids, top), nil
	}
	return rangesOf(uidsIn(gone, ranges)), nil
}

// rangesOf writes ascending uids as ranges of consecutive ones.
func rangesOf(uids []uint32) imap.UIDSet {
	var out imap.UIDSet
	for _, u := range uids {
		if n := len(out); n > 0 && uint32(out[n-1].Stop)+1 == u {
			out[n-1].Stop = imap.UID(u)
			continue
		}
		out = append(out, imap.UIDRange{Start: imap.UID(u), Stop: imap.UID(u)})
	}
	return out
}
