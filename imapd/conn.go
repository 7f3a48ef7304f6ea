package imapd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/portcullis-mail/portcullis/internal/connlimit"
)

// Connection limits (issue 15 item 3): every listener (Serve call) has its own
// connlimit.Pool — MaxConnections, MaxConnectionsPerIP, MaxLoginConnections with the
// oldest making room, LoginTimeout. What is IMAP's is here: the BYE, the count of
// commands before the login (MaxLoginCommands), which imapserver leaves no other place
// to take than the read deadlines it sets, and the per-user limits. imapserver already
// bounds the time one command may take to arrive (30 s from its first byte, 5 minutes
// for an APPEND literal), so a command dripped byte by byte cannot hold a slot.

// connState is one accepted connection.
type connState struct {
	srv  *Server
	ip   netip.Addr
	raw  *limitedConn
	slot *connlimit.Conn // the listener's pool

	mu       sync.Mutex
	ic       *imapserver.Conn // set when an imapserver session starts
	ctl      connCtl          // set when a wire session starts
	deadline int              // SetReadDeadline calls before the login: two per command
}

// limitedConn is the TCP connection beneath TLS: it counts the commands before the login
// (imapserver sets a read deadline twice before each command, between commands, which is
// where the session is closed when they are too many) and releases the pool's slot when
// closed.
type limitedConn struct {
	net.Conn
	st *connState
}

func (c *limitedConn) SetReadDeadline(t time.Time) error {
	st := c.st
	max := st.srv.cfg.MaxLoginCommands
	waiting := st.slot.Waiting()
	st.mu.Lock()
	bye := false
	if waiting && st.ic != nil {
		st.deadline++
		bye = st.deadline > 2*max && max > 0
	}
	ic := st.ic
	st.mu.Unlock()
	if bye {
		st.srv.rlog.Info("imap too many commands before login", "remote", st.ip)
		ic.Bye("Too many commands before login")
		return net.ErrClosed
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitedConn) Close() error {
	c.st.slot.Release()
	return c.Conn.Close()
}

// kick closes a connection that has not logged in (the pool evicts it or its login
// timeout passed), with a BYE when it is not TLS (a write from outside the session's
// goroutine cannot go through a TLS handshake safely).
func (st *connState) kick(why error) {
	text := bye(why)
	st.mu.Lock()
	var ctl connCtl = st.ctl
	if st.ic != nil {
		ctl = st.ic
	}
	st.mu.Unlock()
	st.srv.rlog.Info("imap connection closed", "remote", st.ip, "reason", text)
	var nc net.Conn = st.raw
	if ctl != nil {
		nc = ctl.NetConn()
	}
	if _, isTLS := nc.(*tls.Conn); !isTLS {
		st.raw.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(st.raw.Conn, "* BYE "+text+"\r\n")
	}
	st.raw.Conn.Close()
}

// bye is the text of a BYE for why: connlimit's reason, capitalised as Dovecot's are.
func bye(why error) string {
	text := why.Error()
	return strings.ToUpper(text[:1]) + text[1:]
}

// chanListener hands the connections Serve admitted to imapserver.
type chanListener struct {
	addr net.Addr
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// Serve accepts IMAP connections on ln until Close, with its own pool of connections
// (Config.MaxConnections and the other limits). A listener from tls.NewListener serves
// implicit TLS (port 993); its connections are wrapped again with Config.TLSConfig, which
// must be set, so that the limits see the connection beneath TLS.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	cl := &chanListener{addr: ln.Addr(), c: make(chan net.Conn), done: make(chan struct{})}
	s.lns[ln] = cl
	s.serving.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
		cl.Close()
	}()
	go func() {
		defer s.serving.Done()
		s.srv.Serve(cl)
	}()
	p := connlimit.NewPool(connlimit.Limits{MaxConnections: s.cfg.MaxConnections,
		MaxConnectionsPerIP: s.cfg.MaxConnectionsPerIP, MaxLoginConnections: s.cfg.MaxLoginConnections,
		LoginTimeout: s.cfg.LoginTimeout, IPv6Prefix: s.cfg.IPv6Prefix})
	for {
		c, err := connlimit.Accept(ln, func(err error, wait time.Duration) {
			s.rlog.Warn("imap accept", "err", err, "retry_in", wait)
		})
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			return fmt.Errorf("imapd: accept: %w", err)
		}
		raw := c
		tc, isTLS := c.(*tls.Conn)
		if isTLS {
			raw = tc.NetConn()
		}
		ip := connlimit.RemoteIP(raw)
		if isTLS && s.cfg.TLSConfig == nil {
			s.rlog.Error("imap implicit TLS listener without Config.TLSConfig", "remote", ip)
			c.Close()
			continue
		}
		st := &connState{srv: s, ip: ip}
		st.raw = &limitedConn{Conn: raw, st: st}
		if st.slot, err = p.Admit(ip, st.kick); err != nil {
			text := bye(err)
			s.rlog.Info("imap connection refused", "remote", ip, "reason", text)
			connlimit.Refuse(c, "* BYE "+text)
			continue
		}
		var out net.Conn = st.raw
		if isTLS {
			out = tls.Server(st.raw, s.cfg.TLSConfig)
		}
		if s.cfg.Protocol == ProtocolWire {
			go s.serveWire(out)
			continue
		}
		select {
		case cl.c <- out:
		case <-cl.done:
			out.Close()
			return net.ErrClosed
		}
	}
}

// connStateOf finds the connection state beneath c.
func connStateOf(c *imapserver.Conn) *connState {
	nc := c.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if lc, ok := nc.(*limitedConn); ok {
		return lc.st
	}
	return nil
}

// userKey counts one user's sessions from one address.
type userKey struct {
	user string
	ip   netip.Addr
}

// userLimits counts logged-in sessions per user and per (user, address), server-wide.
type userLimits struct {
	mu     sync.Mutex
	user   map[string]int
	userIP map[userKey]int
}

// add registers a session of user from ip, or refuses it as Dovecot does at the same
// point (mail_max_userip_connections: NO [UNAVAILABLE] at login).
func (s *Server) addUser(user string, ip netip.Addr) error {
	u := &s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	k := userKey{user, ip}
	if n := s.cfg.MaxUserIPConnections; n > 0 && u.userIP[k] >= n {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: fmt.Sprintf("Maximum number of connections from user+IP exceeded (max_user_ip_connections=%d)", n)}
	}
	if n := s.cfg.MaxUserConnections; n > 0 && u.user[user] >= n {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: fmt.Sprintf("Maximum number of connections of user exceeded (max_user_connections=%d)", n)}
	}
	u.user[user]++
	u.userIP[k]++
	return nil
}

func (s *Server) removeUser(user string, ip netip.Addr) {
	u := &s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	k := userKey{user, ip}
	if u.userIP[k]--; u.userIP[k] <= 0 {
		delete(u.userIP, k)
	}
	if u.user[user]--; u.user[user] <= 0 {
		delete(u.user, user)
	}
}
