// Package loggedin keeps a mail server's logged-in sessions by user, with the time each
// logged in and its connection, so that the sessions of a user whose mailbox moved to
// another back-end can be closed (the tenancy watch of mode: backend). imapd, pop3d and
// managesieve each hold a Registry; each ends its sessions with its own protocol's
// temporary failure.
package loggedin

import (
	"net"
	"sync"
	"time"
)

// Registry is the logged-in sessions of one server. S is the server's session type
// (a pointer). The zero Registry is ready for use; it is safe for concurrent use.
type Registry[S comparable] struct {
	mu sync.Mutex
	m  map[string]map[S]Session[S]
}

// Session is one registered session: when it logged in, and its connection then (a
// session changes connection only at STARTTLS/STLS, before it logs in).
type Session[S comparable] struct {
	S    S
	At   time.Time
	Conn net.Conn
}

// Add registers s, which has just logged in as user over conn.
func (r *Registry[S]) Add(user string, s S, conn net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]map[S]Session[S]{}
	}
	if r.m[user] == nil {
		r.m[user] = map[S]Session[S]{}
	}
	r.m[user][s] = Session[S]{S: s, At: time.Now(), Conn: conn}
}

// Remove forgets s, a session of user that ended.
func (r *Registry[S]) Remove(user string, s S) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m[user], s)
	if len(r.m[user]) == 0 {
		delete(r.m, user)
	}
}

// Users returns the users that have at least one session.
func (r *Registry[S]) Users() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.m))
	for u := range r.m {
		out = append(out, u)
	}
	return out
}

// Before returns user's sessions that logged in before t: those that began before a
// move became visible to every node. A session that logged in later is the move's own
// (it copies, then removes, the old mailbox) and is left.
func (r *Registry[S]) Before(user string, t time.Time) []Session[S] {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Session[S]
	for _, s := range r.m[user] {
		if s.At.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

// Interrupt wakes a session blocked reading conn (its read deadline moved into the
// past), so that it sees the mark its server set before and writes its own last line:
// a reply being written is never cut by another. A session that has not ended after
// grace (stalled writing to a client that does not read) has its socket closed.
func Interrupt(conn net.Conn, grace time.Duration) {
	conn.SetReadDeadline(time.Unix(1, 0))
	time.AfterFunc(grace, func() { conn.Close() })
}

// Evict asks user's sessions that logged in before t to end: mark sets a session's
// eviction (false when it was asked before: not counted again), then Interrupt wakes
// its reader so that it writes its own last line. It returns how many were asked.
func (r *Registry[S]) Evict(user string, t time.Time, grace time.Duration, mark func(S) bool) int {
	n := 0
	for _, s := range r.Before(user, t) {
		if !mark(s.S) {
			continue
		}
		n++
		// After the mark: a reader that sets its own deadline later sees the mark.
		Interrupt(s.Conn, grace)
	}
	return n
}
