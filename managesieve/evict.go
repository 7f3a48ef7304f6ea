package managesieve

import "time"

// evictGrace is how long an evicted session has to send its BYE and end on its own
// (it may be writing a response to a slow client) before its socket is closed.
const evictGrace = 5 * time.Second

// LoggedIn returns the users that have at least one session.
func (s *Server) LoggedIn() []string { return s.sessions.Users() }

// Evict ends the sessions of user that logged in before before and returns how many it
// asked to end (a session asked before is not counted again). Each answers its next
// command, or at once when it is waiting for one, with BYE (TRYLATER) text (RFC 5804
// §1.3: the server may close a connection at any time with BYE; TRYLATER says the
// failure is temporary) and is closed. The client reconnects, through the proxy, to
// wherever the user's mailbox is now. A session that logged in later (the move's own,
// which copies and then removes the scripts) is left.
//
// The session writes its own last line: Evict only marks it and moves its read deadline
// into the past, so a response being written (or the TLS stream) is never cut by
// another line. One that does not end within evictGrace (stalled writing to a client
// that does not read) has its socket closed.
func (s *Server) Evict(user string, before time.Time, text string) int {
	return s.sessions.Evict(user, before, evictGrace, func(ss *session) bool {
		t := text
		return ss.evicted.CompareAndSwap(nil, &t)
	})
}
