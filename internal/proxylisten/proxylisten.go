// Package proxylisten wraps a listener so that connections from trusted proxies carry a
// PROXY protocol header (HAProxy's, v1 or v2) naming the real client, as the IMAP and
// POP3 back-ends behind portcullis's proxy need: their logs, throttling and limits then
// see the client, not the proxy. Connections from other addresses are served as they
// come (no header is read from them, so they cannot forge one). Headers are read in a
// goroutine per connection, within a timeout, so a slow peer never holds up Accept.
//
// Movers (WrapWith) are a narrower trust: the back-ends that run portcullis user move
// and log in here with the proxy's master credential. Their connections must carry a
// header too, and may use the master login (FromProxy), but the header's client address
// is only reported (Listener.Mover, for the log: RemoteAddr stays the mover's own) and
// its TLS flag is never believed (ClientTLS): any process on a mover could send one.
package proxylisten

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/portcullis-mail/portcullis/internal/netlist"
)

// HeaderTimeout bounds the wait for a trusted peer's PROXY header.
const HeaderTimeout = 10 * time.Second

// Listener is a net.Listener whose connections from trusted addresses have been
// through their PROXY header: RemoteAddr is the client the header names.
type Listener struct {
	inner *proxyproto.Listener
	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
	// Refused, when set, is told of each trusted connection dropped for a missing or
	// bad header.
	Refused func(peer net.Addr, err error)
	// Mover, when set, is told of each connection from a mover, with the client its
	// header names (believed for nothing but the log).
	Mover func(peer, claimed net.Addr)

	movers []netip.Prefix
}

// Wrap returns ln with PROXY headers required from the addresses of trusted (CIDRs or
// single addresses); an empty trusted list requires them from every peer.
func Wrap(ln net.Listener, trusted []string) (*Listener, error) {
	return WrapWith(ln, trusted, nil)
}

// WrapWith is Wrap with movers (CIDRs or single addresses): their connections must
// carry a header as well, but are movers' (see the package comment), not proxies'. An
// address in both lists is a mover.
func WrapWith(ln net.Listener, trusted, movers []string) (*Listener, error) {
	mp, err := netlist.Prefixes(movers)
	if err != nil {
		return nil, fmt.Errorf("proxylisten: movers %q: %w", movers, err)
	}
	// Without a trusted list every peer is a proxy (Wrap's meaning), which would make
	// every peer that is not a mover more trusted than the movers.
	if len(trusted) == 0 && len(mp) > 0 {
		return nil, fmt.Errorf("proxylisten: movers %q without trusted proxies: every other peer would be believed as a proxy", movers)
	}
	pl := &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: HeaderTimeout}
	if len(trusted) > 0 {
		pol, err := proxyproto.PolicyFromRanges(trusted, proxyproto.REQUIRE, proxyproto.SKIP)
		if err != nil {
			return nil, fmt.Errorf("proxylisten: trusted proxies %q: %w", trusted, err)
		}
		pl.ConnPolicy = func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if isIn(mp, o.Upstream) {
				return proxyproto.REQUIRE, nil
			}
			return pol(o)
		}
	} else {
		pl.ConnPolicy = func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }
	}
	l := &Listener{inner: pl, conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{}), movers: mp}
	go l.loop()
	return l, nil
}

// isIn says whether a's IP is in ps.
func isIn(ps []netip.Prefix, a net.Addr) bool {
	if len(ps) == 0 || a == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && netlist.Contains(ps, ap.Addr().Unmap())
}

// moverConn is a connection from a mover: its header was read (and is kept for
// FromProxy), but its addresses are the socket's own.
type moverConn struct{ *proxyproto.Conn }

func (c moverConn) RemoteAddr() net.Addr { return c.Raw().RemoteAddr() }
func (c moverConn) LocalAddr() net.Addr  { return c.Raw().LocalAddr() }

func (l *Listener) loop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if errors.Is(err, proxyproto.ErrInvalidUpstream) {
				continue // this connection only
			}
			select {
			case l.errc <- err:
			case <-l.done:
			}
			return
		}
		pc, ok := c.(*proxyproto.Conn)
		if !ok { // SKIP: an untrusted peer, served as it is
			l.deliver(c)
			continue
		}
		go func() {
			h := pc.ProxyHeader()
			if h == nil {
				if l.Refused != nil {
					l.Refused(pc.Raw().RemoteAddr(), errors.New("no valid PROXY header"))
				}
				pc.Close()
				return
			}
			if isIn(l.movers, pc.Raw().RemoteAddr()) {
				if l.Mover != nil {
					l.Mover(pc.Raw().RemoteAddr(), h.SourceAddr)
				}
				l.deliver(moverConn{pc})
				return
			}
			l.deliver(pc)
		}()
	}
}

func (l *Listener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection, its header read.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept fails the same way
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener; connections accepted but not yet returned are closed.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// proxied returns the PROXY header c came with, looking through TLS (and any wrapper
// with a NetConn method) to the accepted connection, and whether it came from a mover;
// nil when c came from neither a trusted proxy nor a mover (only their connections
// have one).
func proxied(c net.Conn) (*proxyproto.Header, bool) {
	for i := 0; c != nil && i < 8; i++ {
		if mc, ok := c.(moverConn); ok {
			return mc.ProxyHeader(), true
		}
		if pc, ok := c.(*proxyproto.Conn); ok {
			return pc.ProxyHeader(), false
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = nc.NetConn()
	}
	return nil, false
}

// FromProxy says whether c came through a trusted proxy or a mover: a valid PROXY
// header from one of the addresses given to Wrap or WrapWith. A back-end accepts a
// proxy's master login only then.
func FromProxy(c net.Conn) bool {
	h, _ := proxied(c)
	return h != nil
}

// ClientTLS says whether c came through a trusted proxy whose PROXY v2 header says the
// client reached the proxy over TLS (PP2_TYPE_SSL with PP2_CLIENT_SSL, the PROXY protocol
// specification's §2.2.5, as portcullis's proxy and HAProxy's send-proxy-v2-ssl send). The client's
// password then crossed its network encrypted, and the proxy's plaintext link is on
// the trusted network: a back-end treats the connection as TLS for authentication, as
// Dovecot does for its login_trusted_networks. A mover's claim is never believed: it
// speaks TLS itself when it logs in with a password.
func ClientTLS(c net.Conn) bool {
	h, mover := proxied(c)
	if h == nil || mover {
		return false
	}
	tlvs, err := h.TLVs()
	if err != nil {
		return false
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	return ok && ssl.ClientSSL()
}

// SSLTLV is the PP2_TYPE_SSL TLV saying the client connected over TLS, for a proxy's
// header (the version sub-TLV names TLS, not its exact version).
func SSLTLV() proxyproto.TLV {
	t, _ := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1,
		TLV: []proxyproto.TLV{{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLS")}}}.Marshal()
	return t
}
