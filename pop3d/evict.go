package pop3d

import (
	"net"
	"sync"
	"time"
)

// evictGrace is how long an evicted session has to send its last -ERR and end on its
// own (it may be writing a long RETR to a slow client) before its socket is closed.
const evictGrace = 5 * time.Second

// sessions are the sessions in the TRANSACTION state by user, with the time each logged
// in, so that a user's sessions can be closed when their mailbox moves to another server.
type sessions struct {
	mu sync.Mutex
	m  map[string]map[*session]loggedIn
}

// loggedIn is one registered session: when it logged in and its connection then (a
// session changes connection only at STLS, before it logs in).
type loggedIn struct {
	at   time.Time
	conn net.Conn
}

func (r *sessions) add(user string, s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]map[*session]loggedIn{}
	}
	if r.m[user] == nil {
		r.m[user] = map[*session]loggedIn{}
	}
	r.m[user][s] = loggedIn{at: time.Now(), conn: s.conn}
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
	r := &s.sessions
	r.mu.Lock()
	var victims []*session
	var conns []net.Conn
	for ss, li := range r.m[user] {
		if li.at.Before(before) {
			victims = append(victims, ss)
			conns = append(conns, li.conn)
		}
	}
	r.mu.Unlock()
	n := 0
	for i, ss := range victims {
		t := text
		if !ss.evicted.CompareAndSwap(nil, &t) {
			continue
		}
		n++
		c := conns[i]
		// After the mark: a reader that sets its own deadline later sees the mark.
		c.SetReadDeadline(time.Unix(1, 0))
		time.AfterFunc(evictGrace, func() { c.Close() })
	}
	return n
}
