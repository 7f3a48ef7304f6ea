// Package connlimit bounds the connections of one listener, as the IMAP and POP3 servers
// do (issue 15 item 3: 2,000 connections that never logged in exhausted the descriptors
// and stopped SMTP). A Pool admits at most MaxConnections, at most MaxConnectionsPerIP
// from one address (an IPv6 client counted by its network, /64 by default, as SMTP and the
// auth throttle count it: one host usually owns a whole /64), and keeps at most MaxLoginConnections waiting to log in: when those
// are full the one that has waited longest is closed to make room, as Dovecot's login
// processes do — the longest-waiting of the address with the most connections waiting,
// so that a flood crowds out its own connections and cannot lock users out. A connection that has not logged in
// LoginTimeout after it was admitted is closed too.
//
// The protocol decides how a connection is closed (with a last line or not, over TLS or
// not) and what counts as logging in; the package counts. It imports nothing of
// portcullis.
package connlimit

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
)

// Limits are one pool's bounds; zero or a negative value is no limit.
type Limits struct {
	MaxConnections      int
	MaxConnectionsPerIP int
	MaxLoginConnections int
	LoginTimeout        time.Duration
	// IPv6Prefix is the prefix length by which MaxConnectionsPerIP and the choice of the
	// connection evicted group IPv6 clients; 0 is the default, 64. IPv4 clients (and
	// IPv4-mapped IPv6 ones) count by their address.
	IPv6Prefix int
}

// DefaultIPv6Prefix is the network of IPv6 addresses a pool counts as one client.
const DefaultIPv6Prefix = 64

// CheckIPv6Prefix says what is wrong with an IPv6Prefix (a config's ipv6_prefix), or nil.
func CheckIPv6Prefix(bits int) error {
	if bits < 0 || bits > 128 {
		return fmt.Errorf("ipv6_prefix %d outside 0..128", bits)
	}
	return nil
}

// Key is the address a pool with IPv6 prefix length bits (0: DefaultIPv6Prefix) counts
// ip by: an IPv4 address (or an IPv4-mapped IPv6 one) itself, an IPv6 address the first
// address of its network, without a zone.
func Key(ip netip.Addr, bits int) netip.Addr {
	ip = ip.Unmap()
	if !ip.Is6() {
		return ip
	}
	if bits <= 0 {
		bits = DefaultIPv6Prefix
	}
	if p, err := ip.Prefix(min(bits, 128)); err == nil {
		return p.Addr()
	}
	return ip.WithZone("")
}

// Why a connection is refused (by Admit) or closed before it logged in (given to the
// kick function). The texts are the responses' words in lower case.
var (
	ErrTooMany            = errors.New("too many connections, try again later")
	ErrTooManyFromAddress = errors.New("too many connections from your address")
	ErrEvicted            = errors.New("disconnected: too many connections waiting to log in")
)

// LoginTimeoutError closes a connection that did not log in within the pool's
// LoginTimeout.
type LoginTimeoutError struct{ Timeout time.Duration }

func (e *LoginTimeoutError) Error() string {
	return fmt.Sprintf("disconnected: no login within %v", e.Timeout)
}

// Pool is one listener's connections. Its methods and those of its Conns are safe for
// concurrent use.
type Pool struct {
	lim   Limits
	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int // by Key
	login *list.List         // *Conn not logged in yet, oldest first
}

// NewPool returns an empty pool with the limits lim.
func NewPool(lim Limits) *Pool {
	return &Pool{lim: lim, perIP: map[netip.Addr]int{}, login: list.New()}
}

// evictee chooses the connection waiting to log in that makes room for a new one: the
// oldest of those from the address with the most connections waiting. Plain oldest-first
// let a flood that reconnects as fast as it is closed (hundreds a second from a few
// addresses) close every user's connection before its LOGIN was answered (found by
// cmd/portcullis TestE2ESoak); this way a flood crowds out its own connections, and a
// user's goes only when no address has more than one waiting. p.mu is held and p.login
// is not empty.
func (p *Pool) evictee() *Conn {
	waiting := make(map[netip.Addr]int, p.login.Len())
	for e := p.login.Front(); e != nil; e = e.Next() {
		waiting[e.Value.(*Conn).ip]++
	}
	var old *Conn
	most := 0
	for e := p.login.Front(); e != nil; e = e.Next() {
		c := e.Value.(*Conn)
		if n := waiting[c.ip]; n > most {
			old, most = c, n
		}
	}
	return old
}

// Conn is the slot of one admitted connection.
type Conn struct {
	pool *Pool
	ip   netip.Addr // the Key of the client's address
	kick func(why error)
	el   *list.Element // in pool.login until the login; guarded by pool.mu

	mu       sync.Mutex
	authed   bool
	released bool
	kicked   bool
	timer    *time.Timer
}

// Admit takes a slot for a connection from ip (counted by its Key), or says why there is none (ErrTooMany,
// ErrTooManyFromAddress). When MaxLoginConnections are waiting to log in, the one that
// has waited longest is kicked (ErrEvicted) to make room.
//
// kick closes the connection; the slot is released when it returns. It is called in a
// goroutine of its own, at most once, and only while the connection has neither logged
// in nor been released: with ErrEvicted, or with a *LoginTimeoutError once LoginTimeout
// has passed. Whatever kick reads must be set before Admit is called (kick must not
// need the Conn that Admit returns).
func (p *Pool) Admit(ip netip.Addr, kick func(why error)) (*Conn, error) {
	ip = Key(ip, p.lim.IPv6Prefix)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lim.MaxConnections > 0 && p.total >= p.lim.MaxConnections {
		return nil, ErrTooMany
	}
	if p.lim.MaxConnectionsPerIP > 0 && p.perIP[ip] >= p.lim.MaxConnectionsPerIP {
		return nil, ErrTooManyFromAddress
	}
	if p.lim.MaxLoginConnections > 0 && p.login.Len() >= p.lim.MaxLoginConnections {
		old := p.evictee()
		p.login.Remove(old.el)
		old.el = nil
		go old.close(ErrEvicted)
	}
	c := &Conn{pool: p, ip: ip, kick: kick}
	c.el = p.login.PushBack(c)
	p.total++
	p.perIP[ip]++
	if d := p.lim.LoginTimeout; d > 0 {
		c.mu.Lock()
		c.timer = time.AfterFunc(d, func() { c.close(&LoginTimeoutError{d}) })
		c.mu.Unlock()
	}
	return c, nil
}

// close kicks the connection unless it has logged in, been released or kicked.
func (c *Conn) close(why error) {
	c.mu.Lock()
	if c.authed || c.released || c.kicked {
		c.mu.Unlock()
		return
	}
	c.kicked = true
	c.mu.Unlock()
	c.kick(why)
	c.Release()
}

// LoggedIn ends the login phase: the connection no longer counts as waiting to log in,
// and neither the login timeout nor eviction applies to it.
func (c *Conn) LoggedIn() {
	c.mu.Lock()
	c.authed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.pool.mu.Lock()
	c.leaveLoginLocked()
	c.pool.mu.Unlock()
}

// Waiting reports whether the connection has yet to log in.
func (c *Conn) Waiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.authed
}

// Release gives the slot back, when the connection is closed; a second call does
// nothing.
func (c *Conn) Release() {
	c.mu.Lock()
	if c.released {
		c.mu.Unlock()
		return
	}
	c.released = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	p := c.pool
	p.mu.Lock()
	p.total--
	if p.perIP[c.ip]--; p.perIP[c.ip] <= 0 {
		delete(p.perIP, c.ip)
	}
	c.leaveLoginLocked()
	p.mu.Unlock()
}

func (c *Conn) leaveLoginLocked() {
	if c.el != nil {
		c.pool.login.Remove(c.el)
		c.el = nil
	}
}

// RemoteIP is the address a pool counts c by: its remote IP address (an IPv4-mapped one
// as IPv4), or the zero Addr when it has none (net.Pipe, a unix socket).
func RemoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// refusing bounds the goroutines that answer refused TLS connections.
var refusing = make(chan struct{}, 64)

// Refuse writes line and CRLF to a connection there is no slot for, and closes it. On a
// *tls.Conn the line needs a handshake first: that happens in one of at most 64
// goroutines, given 3 seconds; when all are busy the connection is just closed.
func Refuse(c net.Conn, line string) {
	if tc, ok := c.(*tls.Conn); ok {
		select {
		case refusing <- struct{}{}:
			go func() {
				defer func() { <-refusing }()
				tc.SetDeadline(time.Now().Add(3 * time.Second))
				io.WriteString(tc, line+"\r\n")
				tc.Close()
			}()
		default:
			tc.Close()
		}
		return
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, line+"\r\n")
	c.Close()
}

// Accept waits for the next connection on ln. After an error worth retrying (out of
// descriptors, aborted connections, timeouts) it waits, from 5 ms doubling up to 1 s as
// net/http does, and accepts again, first telling retry the error and the wait; any other
// error (net.ErrClosed once ln is closed) it returns.
func Accept(ln net.Listener, retry func(err error, wait time.Duration)) (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			return c, nil
		}
		var ne net.Error
		var t interface{ Temporary() bool }
		if !(errors.As(err, &ne) && ne.Timeout() || errors.As(err, &t) && t.Temporary()) {
			return nil, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		retry(err, delay)
		time.Sleep(delay)
	}
}
