package spool

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// IDs are 12 bytes rendered in lower-case base32hex (20 characters): 8 bytes of Unix time in
// nanoseconds, strictly increasing within a process, then 4 random bytes so that two
// processes sharing a clock never collide. base32hex keeps the byte order, so ids sort by
// arrival time, and the alphabet (0-9a-v) is safe in file names.
const idLen = 20

var idEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

var idClock struct {
	sync.Mutex
	last int64
}

func newID() string {
	idClock.Lock()
	now := time.Now().UnixNano()
	if now <= idClock.last {
		now = idClock.last + 1
	}
	idClock.last = now
	idClock.Unlock()

	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now))
	_, _ = rand.Read(b[8:]) // crypto/rand.Read never fails on Linux (Go ≥ 1.24 it cannot)
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// ValidID reports whether s has the shape of a spool id. Every method that takes an id
// checks it first, so an id from a command line can never name a path outside the spool.
func ValidID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'v') {
			return false
		}
	}
	return true
}

// IDTime returns the time encoded in a valid id (when Enqueue assigned it).
func IDTime(id string) (time.Time, bool) {
	if !ValidID(id) {
		return time.Time{}, false
	}
	b, err := idEncoding.DecodeString(strings.ToUpper(id))
	if err != nil || len(b) != 12 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))), true
}
