package imapd

import "sync"

// \Recent (RFC 3501 §2.3.2) for IMAP4rev1 sessions, as Dovecot keeps it: a message is
// recent to the first session that selects its mailbox read-write (SELECT, or an update
// while selected) after it arrived, and to no later one. EXAMINE shows the recent
// messages without taking them. IMAP4rev2 (RFC 9051) dropped \Recent, so sessions that
// ENABLEd it neither see nor take them.
//
// The floor (every UID at or above it is still recent) lives in the server's memory, per
// user, mailbox and UIDVALIDITY: after a restart every message counts as recent once
// more, as in Dovecot after its index is lost.

type recentKey struct {
	user        string
	mailbox     int64
	uidValidity uint32
}

type recentFloors struct {
	mu sync.Mutex
	m  map[recentKey]uint32
}

// recent returns those of uids (ascending) that are still recent; with claim it also
// takes them, so that no other session sees them as recent.
func (r *recentFloors) recent(k recentKey, uids []uint32, claim bool) []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	floor := r.m[k]
	var out []uint32
	for _, uid := range uids {
		if uid >= floor {
			out = append(out, uid)
		}
	}
	if claim && len(out) > 0 {
		if r.m == nil {
			r.m = map[recentKey]uint32{}
		}
		r.m[k] = out[len(out)-1] + 1
	}
	return out
}

// floor is the lowest UID that may still be recent.
func (r *recentFloors) floor(k recentKey) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[k]
}
