// Package proxylisten wraps a listener so that connections from trusted proxies carry a
// PROXY protocol header (HAProxy's, v1 or v2) naming the real client, as the IMAP and
// POP3 back-ends behind portcullis's proxy need: their logs, throttling and limits then
// see the client, not the proxy. Connections from other addresses are served as they
// come (no header is read from them, so they cannot forge one). Headers are read in a
// goroutine per connection, within a timeout, so a slow peer never holds up Accept.
package proxylisten

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
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
}

// Wrap returns ln with PROXY headers required from the addresses of trusted (CIDRs or
// single addresses); an empty trusted list requires them from every peer.
func Wrap(ln net.Listener, trusted []string) (*Listener, error) {
	pl := &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: HeaderTimeout}
	if len(trusted) > 0 {
		pol, err := proxyproto.PolicyFromRanges(trusted, proxyproto.REQUIRE, proxyproto.SKIP)
		if err != nil {
			return nil, fmt.Errorf("proxylisten: trusted proxies %q: %w", trusted, err)
		}
		pl.ConnPolicy = pol
	} else {
		pl.ConnPolicy = func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }
	}
	l := &Listener{inner: pl, conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go l.loop()
	return l, nil
}

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
			if pc.ProxyHeader() == nil {
				if l.Refused != nil {
					l.Refused(pc.Raw().RemoteAddr(), errors.New("no valid PROXY header"))
				}
				pc.Close()
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
// with a NetConn method) to the accepted connection; nil when c did not come through a
// trusted proxy (only connections from the trusted addresses have one).
func proxied(c net.Conn) *proxyproto.Header {
	for i := 0; c != nil && i < 8; i++ {
		if pc, ok := c.(*proxyproto.Conn); ok {
			return pc.ProxyHeader()
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = nc.NetConn()
	}
	return nil
}

// FromProxy says whether c came through a trusted proxy: a valid PROXY header from one
// of the addresses given to Wrap. A back-end accepts a proxy's master login only then.
func FromProxy(c net.Conn) bool { return proxied(c) != nil }

// ClientTLS says whether c came through a trusted proxy whose PROXY v2 header says the
// client reached the proxy over TLS (PP2_TYPE_SSL with PP2_CLIENT_SSL, the PROXY protocol
// specification's §2.2.5, as portcullis's proxy and HAProxy's send-proxy-v2-ssl send). The client's
// password then crossed its network encrypted, and the proxy's plaintext link is on
// the trusted network: a back-end treats the connection as TLS for authentication, as
// Dovecot does for its login_trusted_networks.
func ClientTLS(c net.Conn) bool {
	h := proxied(c)
	if h == nil {
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
