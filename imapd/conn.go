package imapd

import (
	"container/list"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Connection limits (issue 15 item 3: 2,000 unauthenticated connections kept alive by
// NOOP exhausted the descriptors and stopped SMTP). Every listener (Serve call) has its
// own pool: at most MaxConnections, MaxConnectionsPerIP from one address, and
// MaxLoginConnections that have not logged in — when those are full the oldest of them is
// closed to make room, as Dovecot's login processes do. A connection must log in within
// LoginTimeout of connecting and with at most MaxLoginCommands commands; imapserver
// already bounds the time one command may take to arrive (30 s from its first byte, 5
// minutes for an APPEND literal), so a command dripped byte by byte cannot hold a slot.

// pool is one listener's connections.
type pool struct {
	srv   *Server
	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
	login *list.List // *connState not logged in yet, oldest first
}

// connState is one accepted connection.
type connState struct {
	pool *pool
	ip   netip.Addr
	raw  *limitedConn

	mu       sync.Mutex
	ic       *imapserver.Conn // set when the session starts
	el       *list.Element    // in pool.login until the login
	authed   bool
	released bool
	timer    *time.Timer
	deadline int // SetReadDeadline calls before the login: two per command
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
	st.mu.Lock()
	bye := false
	if !st.authed && st.ic != nil {
		st.deadline++
		bye = st.deadline > 2*st.pool.srv.cfg.MaxLoginCommands && st.pool.srv.cfg.MaxLoginCommands > 0
	}
	ic := st.ic
	st.mu.Unlock()
	if bye {
		st.pool.srv.rlog.Info("imap too many commands before login", "remote", st.ip)
		ic.Bye("Too many commands before login")
		return net.ErrClosed
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitedConn) Close() error {
	c.st.release()
	return c.Conn.Close()
}

func newPool(s *Server) *pool {
	return &pool{srv: s, perIP: map[netip.Addr]int{}, login: list.New()}
}

// admit takes a slot for a new connection from ip, or says why there is none.
func (p *pool) admit(ip netip.Addr) (*connState, string) {
	cfg := &p.srv.cfg
	p.mu.Lock()
	defer p.mu.Unlock()
	if cfg.MaxConnections > 0 && p.total >= cfg.MaxConnections {
		return nil, "Too many connections, try again later"
	}
	if cfg.MaxConnectionsPerIP > 0 && p.perIP[ip] >= cfg.MaxConnectionsPerIP {
		return nil, "Too many connections from your address"
	}
	if cfg.MaxLoginConnections > 0 && p.login.Len() >= cfg.MaxLoginConnections {
		// Make room: the connection that has waited longest to log in goes (Dovecot).
		old := p.login.Remove(p.login.Front()).(*connState)
		old.el = nil
		go old.kick("Disconnected: too many connections waiting to log in")
	}
	st := &connState{pool: p, ip: ip}
	st.el = p.login.PushBack(st)
	p.total++
	p.perIP[ip]++
	return st, ""
}

// release gives the slot back; idempotent.
func (st *connState) release() {
	st.mu.Lock()
	if st.released {
		st.mu.Unlock()
		return
	}
	st.released = true
	if st.timer != nil {
		st.timer.Stop()
	}
	st.mu.Unlock()
	p := st.pool
	p.mu.Lock()
	p.total--
	if p.perIP[st.ip]--; p.perIP[st.ip] <= 0 {
		delete(p.perIP, st.ip)
	}
	if st.el != nil {
		p.login.Remove(st.el)
		st.el = nil
	}
	p.mu.Unlock()
}

// loggedIn ends the login phase: no more login timeout or command count.
func (st *connState) loggedIn() {
	st.mu.Lock()
	st.authed = true
	if st.timer != nil {
		st.timer.Stop()
	}
	st.mu.Unlock()
	p := st.pool
	p.mu.Lock()
	if st.el != nil {
		p.login.Remove(st.el)
		st.el = nil
	}
	p.mu.Unlock()
}

// kick closes a connection that has not logged in, with a BYE when it is not TLS (a
// write from outside the session's goroutine cannot go through a TLS handshake safely).
func (st *connState) kick(text string) {
	st.mu.Lock()
	if st.authed || st.released {
		st.mu.Unlock()
		return
	}
	ic := st.ic
	st.mu.Unlock()
	st.pool.srv.rlog.Info("imap connection closed", "remote", st.ip, "reason", text)
	var nc net.Conn = st.raw
	if ic != nil {
		nc = ic.NetConn()
	}
	if _, isTLS := nc.(*tls.Conn); !isTLS {
		st.raw.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(st.raw.Conn, "* BYE "+text+"\r\n")
	}
	st.raw.Close()
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

// refusing bounds the goroutines that answer refused TLS connections.
var refusing = make(chan struct{}, 64)

// refuse answers a connection there is no slot for with BYE and closes it.
func (s *Server) refuse(c net.Conn, ip netip.Addr, text string) {
	s.rlog.Info("imap connection refused", "remote", ip, "reason", text)
	if tc, ok := c.(*tls.Conn); ok {
		select {
		case refusing <- struct{}{}:
			go func() {
				defer func() { <-refusing }()
				tc.SetDeadline(time.Now().Add(3 * time.Second))
				io.WriteString(tc, "* BYE "+text+"\r\n")
				tc.Close()
			}()
		default:
			tc.Close()
		}
		return
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "* BYE "+text+"\r\n")
	c.Close()
}

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
	p := newPool(s)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// EMFILE and friends: wait instead of spinning (net/http does the same).
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.rlog.Warn("imap accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("imapd: accept: %w", err)
		}
		delay = 0
		raw := c
		tc, isTLS := c.(*tls.Conn)
		if isTLS {
			raw = tc.NetConn()
		}
		var ip netip.Addr
		if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil {
			ip = ap.Addr().Unmap()
		}
		if isTLS && s.cfg.TLSConfig == nil {
			s.rlog.Error("imap implicit TLS listener without Config.TLSConfig", "remote", ip)
			c.Close()
			continue
		}
		st, why := p.admit(ip)
		if st == nil {
			s.refuse(c, ip, why)
			continue
		}
		st.raw = &limitedConn{Conn: raw, st: st}
		var out net.Conn = st.raw
		if isTLS {
			out = tls.Server(st.raw, s.cfg.TLSConfig)
		}
		if s.cfg.LoginTimeout > 0 {
			st.mu.Lock()
			st.timer = time.AfterFunc(s.cfg.LoginTimeout, func() {
				st.kick(fmt.Sprintf("Disconnected: no login within %v", s.cfg.LoginTimeout))
			})
			st.mu.Unlock()
		}
		select {
		case cl.c <- out:
		case <-cl.done:
			out.Close()
			return net.ErrClosed
		}
	}
}

// isTemporaryAccept reports accept errors worth retrying (out of descriptors, aborted
// connections).
func isTemporaryAccept(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
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
