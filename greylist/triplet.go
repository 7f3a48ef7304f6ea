package greylist

import (
	"net/netip"
	"regexp"
	"strings"
)

// Params are the timing of greylisting, in seconds (postgrey's options).
type Params struct {
	Delay       int64 // --delay: how long a new triplet is refused (300)
	RetryWindow int64 // --retry-window: how long a first attempt waits for its retry (2 days)
	MaxAge      int64 // --max-age: how long an entry is kept after it was last seen (35 days)
	// AutoAllowInterval: a client's passes count at most once in this interval (postgrey:
	// 3600, fixed).
	AutoAllowInterval int64
}

// Entry is a stored triplet: first and last seen (Unix seconds).
type Entry struct {
	First, Last int64
}

// Step applies one attempt at now to the stored entry e (ok: there is one), as postgrey's
// smtpd_access_policy does, and returns the entry to store, the first-seen time after the
// attempt and whether the triplet had already passed before it. An entry not seen for
// MaxAge counts as absent (postgrey's maintenance would have deleted it).
func Step(e Entry, ok bool, now int64, p Params) (next Entry, passedBefore bool) {
	first := now
	if ok && now-e.Last <= p.MaxAge {
		first = e.First
		if e.Last-e.First >= p.Delay {
			passedBefore = true
		} else if now-first > p.RetryWindow {
			// The first retry came after the retry window: start over.
			first = now
		}
		if first > now {
			first = now // a first-seen date in the future
		}
	}
	return Entry{First: first, Last: now}, passedBefore
}

// ClientEntry is a client's auto-allow state: successful passes and the last one counted.
type ClientEntry struct {
	Count int64
	Last  int64
}

// ClientCheck is postgrey's test before the triplet: a client with threshold passes or
// more is allowed, and its entry refreshed (counted again) once an AutoAllowInterval. It returns the
// entry to store (changed reports whether it differs).
func ClientCheck(c ClientEntry, ok bool, now int64, threshold int64, p Params) (allowed bool, next ClientEntry, changed bool) {
	if !ok || now-c.Last > p.MaxAge || threshold <= 0 || c.Count < threshold {
		return false, c, false
	}
	if now >= c.Last+p.AutoAllowInterval || c.Last > now {
		return true, ClientEntry{Count: c.Count + 1, Last: now}, true
	}
	return true, c, false
}

// ClientPass counts a successful pass of greylisting (a triplet whose delay just ran
// out), at most one an AutoAllowInterval.
func ClientPass(c ClientEntry, ok bool, now int64, p Params) (next ClientEntry, changed bool) {
	if ok && now-c.Last > p.MaxAge {
		ok = false
	}
	if !ok {
		return ClientEntry{Count: 1, Last: now}, true
	}
	if now >= c.Last+p.AutoAllowInterval {
		return ClientEntry{Count: c.Count + 1, Last: now}, true
	}
	return c, false
}

var digitRun = regexp.MustCompile(`\b\d+\b`)

// NormalizeSender is postgrey's do_sender_substitutions: the BATV tag of
// prvs=tag-val=local (or prvs=local=tag-val) is dropped, then the +extension, then every
// run of digits standing alone as a word becomes "#". An address without "@" is kept.
func NormalizeSender(addr string) string {
	user, domain, ok := strings.Cut(addr, "@")
	if !ok {
		return addr
	}
	if strings.HasPrefix(user, "prvs=") {
		if a := strings.Split(user, "="); len(a) == 3 {
			tag1, tag2 := batvTag(a[1]), batvTag(a[2])
			switch {
			case tag1 && !tag2:
				user = a[2]
			case tag2 && !tag1:
				user = a[1]
			default:
				user = a[2]
			}
		}
	}
	if i := strings.IndexByte(user, '+'); i >= 0 {
		user = user[:i]
	}
	user = digitRun.ReplaceAllString(user, "#")
	return user + "@" + domain
}

// batvTag is postgrey's /^[0-9a-z]{10}/.
func batvTag(s string) bool {
	if len(s) < 10 {
		return false
	}
	for i := 0; i < 10; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// ClientNet is the client's network as postgrey keys it: the address masked to v4 bits
// (IPv4) or v6 bits (IPv6), written as an address.
func ClientNet(ip netip.Addr, v4, v6 int) string {
	ip = ip.Unmap()
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	if p, err := ip.Prefix(bits); err == nil {
		return p.Addr().String()
	}
	return ip.String()
}

// TripletKey is postgrey's key: lower-case "net/sender/recipient", the sender normalised.
func TripletKey(clientNet, sender, rcpt string) string {
	return strings.ToLower(clientNet + "/" + NormalizeSender(sender) + "/" + rcpt)
}
