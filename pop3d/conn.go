package pop3d

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/internal/connlimit"
)

// Connection limits (issue 15 item 3: IMAP and POP3 had none, and 2,000 idle connections
// exhausted the descriptors SMTP needed). Every listener (Serve call) has its own
// connlimit.Pool: MaxConnections, MaxConnectionsPerIP, and MaxLoginConnections with the
// oldest making room. The login timeout is not the pool's timer but the session's read
// deadline (readLine), which ServeConn applies too: every command line must arrive whole
// within the idle timeout, and before the login within what is left of LoginTimeout, so
// a line dripped byte by byte cannot hold a slot, and a session that times out is closed
// without a response (RFC 1939 §3). The session counts MaxLoginCommands.

// newPool returns the pool of one listener.
func (s *Server) newPool() *connlimit.Pool {
	return connlimit.NewPool(connlimit.Limits{MaxConnections: s.cfg.MaxConnections,
		MaxConnectionsPerIP: s.cfg.MaxConnectionsPerIP, MaxLoginConnections: s.cfg.MaxLoginConnections,
		IPv6Prefix: s.cfg.IPv6Prefix})
}

// connState is one accepted connection.
type connState struct {
	srv  *Server
	ip   netip.Addr
	conn net.Conn        // as accepted
	slot *connlimit.Conn // the listener's pool

	mu  sync.Mutex
	tls bool // STLS happened: a line from outside the session cannot be written
}

func (st *connState) startedTLS() {
	st.mu.Lock()
	st.tls = true
	st.mu.Unlock()
}

// kick closes a connection the pool evicts, with -ERR when it is not TLS.
func (st *connState) kick(why error) {
	st.mu.Lock()
	isTLS := st.tls
	st.mu.Unlock()
	st.srv.rlog.Info("pop3 connection closed", "remote", st.ip, "reason", why.Error())
	if _, ok := st.conn.(*tls.Conn); !ok && !isTLS {
		st.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(st.conn, "-ERR [SYS/TEMP] "+why.Error()+"\r\n")
	}
	st.conn.Close()
}

// refuse answers a connection there is no slot for with -ERR [SYS/TEMP] (RFC 3206) and
// closes it.
func (s *Server) refuse(c net.Conn, ip netip.Addr, why error) {
	s.rlog.Info("pop3 connection refused", "remote", ip, "reason", why.Error())
	connlimit.Refuse(c, "-ERR [SYS/TEMP] "+why.Error())
}
