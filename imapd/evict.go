package imapd

import (
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// sessions are the logged-in sessions by user and the time each logged in, so that a
// user's sessions can be closed when their mailbox moves to another server.
type sessions struct {
	mu sync.Mutex
	m  map[string]map[*session]time.Time
}

func (r *sessions) add(user string, s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]map[*session]time.Time{}
	}
	if r.m[user] == nil {
		r.m[user] = map[*session]time.Time{}
	}
	r.m[user][s] = time.Now()
}

func (r *sessions) remove(user string, s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m[user], s)
	if len(r.m[user]) == 0 {
		delete(r.m, user)
	}
}

// LoggedIn returns the users that have at least one session.
func (s *Server) LoggedIn() []string {
	r := &s.sessions
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.m))
	for u := range r.m {
		out = append(out, u)
	}
	return out
}

// Evict ends the sessions of user that logged in before before, with an untagged
// BYE [UNAVAILABLE] text (RFC 9051 §7.1.5: the server may send BYE at any time), and
// returns how many. The client reconnects, through the proxy, to wherever the user's
// mailbox is now. A session that logged in later (an admin's copy tool, say) is left.
func (s *Server) Evict(user string, before time.Time, text string) int {
	r := &s.sessions
	r.mu.Lock()
	var victims []*session
	for ss, at := range r.m[user] {
		if at.Before(before) {
			victims = append(victims, ss)
		}
	}
	r.mu.Unlock()
	for _, ss := range victims {
		if wc, ok := ss.conn.(*wireConn); ok {
			// Under the connection's write lock, so it does not cut another response.
			_ = wc.write(func(e *enc) error {
				return e.raw("* ").status("BYE", imap.ResponseCodeUnavailable, text).crlf()
			})
			_ = wc.flushOut() // responses wait in the cork until sent (connbuf.go)
		}
		// Closing the socket ends the session's reader, which cleans up as on a drop.
		ss.conn.NetConn().Close()
	}
	return len(victims)
}
