package pop3d

import "time"

// evictGrace is how long an evicted session has to send its last -ERR and end on its
// own (it may be writing a long RETR to a slow client) before its socket is closed.
const evictGrace = 5 * time.Second

// LoggedIn returns the users that have at least one session.
func (s *Server) LoggedIn() []string { return s.sessions.Users() }

// Evict ends the sessions of user that logged in before before and returns how many it
// asked to end (a session asked before is not counted again). Each answers its next
// command, or at once when it is waiting for one, with "-ERR [SYS/TEMP] text" (RFC 3206
// §4: a temporary failure, the client should try again later; RFC 2449 §8 lets a
// server close after -ERR) and is closed without entering the UPDATE state, so the
// messages marked with DELE stay (RFC 1939 §6). The client reconnects, through the
// proxy, to wherever the user's mailbox is now. A session that logged in later (the
// move's own UIDL listing) is left.
//
// The session writes its own last line: Evict only marks it and moves its read deadline
// into the past, so a reply being written is never cut by another line. One that does
// not end within evictGrace (stalled writing to a client that does not read) has its
// socket closed.
func (s *Server) Evict(user string, before time.Time, text string) int {
	return s.sessions.Evict(user, before, evictGrace, func(ss *session) bool {
		t := text
		return ss.evicted.CompareAndSwap(nil, &t)
	})
}
