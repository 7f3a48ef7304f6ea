package web

import (
	"fmt"
	"testing"
	"time"
)

// TestOneUserCannotFillTheSessions: logging in over and over ends the same user's older
// sessions instead of filling the table, so other users can still log in.
func TestOneUserCannotFillTheSessions(t *testing.T) {
	now := time.Unix(1e9, 0)
	ss := newSessions(time.Hour, time.Hour, 100, func() time.Time { return now })
	var first *session
	for i := range 500 {
		now = now.Add(time.Second)
		s, err := ss.create("alice@example.test", false)
		if err != nil {
			t.Fatalf("alice's login %d: %v", i, err)
		}
		if first == nil {
			first = s
		}
	}
	if n := ss.count(); n > 20 {
		t.Errorf("%d sessions alive for one user, want at most 20", n)
	}
	if _, ok := ss.byID[first.id]; ok {
		t.Error("alice's least recently used session survived")
	}
	for i := range 50 {
		if _, err := ss.create(fmt.Sprintf("user%d@example.test", i), false); err != nil {
			t.Fatalf("another user's login after alice's flood: %v", err)
		}
	}
}
