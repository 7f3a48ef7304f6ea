package imapd

import (
	"time"

	"github.com/emersion/go-imap/v2"
)

// LoggedIn returns the users that have at least one session.
func (s *Server) LoggedIn() []string { return s.sessions.Users() }

// Evict ends the sessions of user that logged in before before, with an untagged
// BYE [UNAVAILABLE] text (RFC 9051 §7.1.5: the server may send BYE at any time), and
// returns how many. The client reconnects, through the proxy, to wherever the user's
// mailbox is now. A session that logged in later (an admin's copy tool, say) is left.
func (s *Server) Evict(user string, before time.Time, text string) int {
	victims := s.sessions.Before(user, before)
	for _, li := range victims {
		ss := li.S
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
