package pop3d

import (
	"container/list"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Connection limits (issue 15 item 3: IMAP and POP3 had none, and 2,000 idle connections
// exhausted the descriptors SMTP needed). Every listener (Serve call) has its own pool: at
// most MaxConnections, MaxConnectionsPerIP from one address, and MaxLoginConnections that
// have not logged in — when those are full the oldest of them is closed to make room, as
// Dovecot's pop3-login does. A session must log in within LoginTimeout of connecting and
// with at most MaxLoginCommands commands; every command line must arrive whole within the
// idle timeout (before the login: within what is left of LoginTimeout), so a line
// dripped byte by byte cannot hold a slot.

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
	conn net.Conn      // as accepted
	el   *list.Element // in pool.login until the login; guarded by pool.mu

	mu       sync.Mutex
	tls      bool // STLS happened: a BYE from outside the session cannot be written
	authed   bool
	released bool
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
		return nil, "too many connections, try again later"
	}
	if cfg.MaxConnectionsPerIP > 0 && p.perIP[ip] >= cfg.MaxConnectionsPerIP {
		return nil, "too many connections from your address"
	}
	if cfg.MaxLoginConnections > 0 && p.login.Len() >= cfg.MaxLoginConnections {
		old := p.login.Remove(p.login.Front()).(*connState)
		old.el = nil
		go old.kick("disconnected: too many connections waiting to log in")
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

// loggedIn takes the connection out of the ones waiting to log in.
func (st *connState) loggedIn() {
	st.mu.Lock()
	st.authed = true
	st.mu.Unlock()
	p := st.pool
	p.mu.Lock()
	if st.el != nil {
		p.login.Remove(st.el)
		st.el = nil
	}
	p.mu.Unlock()
}

func (st *connState) startedTLS() {
	st.mu.Lock()
	st.tls = true
	st.mu.Unlock()
}

// kick closes a connection that has not logged in, with -ERR when it is not TLS.
func (st *connState) kick(text string) {
	st.mu.Lock()
	if st.authed || st.released {
		st.mu.Unlock()
		return
	}
	isTLS := st.tls
	st.mu.Unlock()
	st.pool.srv.rlog.Info("pop3 connection closed", "remote", st.ip, "reason", text)
	if _, ok := st.conn.(*tls.Conn); !ok && !isTLS {
		st.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(st.conn, "-ERR [SYS/TEMP] "+text+"\r\n")
	}
	st.conn.Close()
}

// refusing bounds the goroutines that answer refused TLS connections.
var refusing = make(chan struct{}, 64)

// refuse answers a connection there is no slot for with -ERR [SYS/TEMP] (RFC 3206) and
// closes it.
func (s *Server) refuse(c net.Conn, ip netip.Addr, text string) {
	s.rlog.Info("pop3 connection refused", "remote", ip, "reason", text)
	line := "-ERR [SYS/TEMP] " + text + "\r\n"
	if tc, ok := c.(*tls.Conn); ok {
		select {
		case refusing <- struct{}{}:
			go func() {
				defer func() { <-refusing }()
				tc.SetDeadline(time.Now().Add(3 * time.Second))
				io.WriteString(tc, line)
				tc.Close()
			}()
		default:
			tc.Close()
		}
		return
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, line)
	c.Close()
}
