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

	"github.com/portcullis-mail/portcullis/internal/connlimit"
)

// Connection limits (issue 15 item 3): every listener (Serve call) has its own
// connlimit.Pool — MaxConnections, MaxConnectionsPerIP, MaxLoginConnections with the
// oldest making room, LoginTimeout. What is IMAP's is here: the BYE, the count of
// commands before the login (MaxLoginCommands, counted by wireConn) and the per-user
// limits. wireConn bounds the time one command may take to arrive, so a command dripped
// byte by byte cannot hold a slot.

// connState is one accepted connection.
type connState struct {
	srv  *Server
	ip   netip.Addr
	raw  *limitedConn
	slot *connlimit.Conn // the listener's pool

	mu  sync.Mutex
	ctl connCtl // set when the session starts
}

// limitedConn is the TCP connection beneath TLS: it releases the pool's slot when closed.
type limitedConn struct {
	net.Conn
	st *connState
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
	ctl := st.ctl
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
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
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
		go s.serveWire(out)
	}
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
