package proxylisten_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/portcullis-mail/portcullis/internal/proxylisten"
)

func listen(t *testing.T, trusted []string) *proxylisten.Listener {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := proxylisten.Wrap(raw, trusted)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, l net.Listener, header *proxyproto.Header) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if header != nil {
		if _, err := header.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write([]byte("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	return c
}

func header(client string) *proxyproto.Header {
	return proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client)),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:143")))
}

func accept(t *testing.T, l net.Listener) (net.Conn, string) {
	t.Helper()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return c, line
}

func TestTrusted(t *testing.T) {
	l := listen(t, []string{"127.0.0.0/8"})
	dial(t, l, header("203.0.113.9:40000"))
	c, line := accept(t, l)
	if got := c.RemoteAddr().String(); got != "203.0.113.9:40000" || line != "hello\r\n" {
		t.Fatalf("remote %s, line %q", got, line)
	}
}

// A trusted peer that sends no header is dropped, and does not block the next one.
func TestTrustedWithoutHeader(t *testing.T) {
	l := listen(t, []string{"127.0.0.1"})
	refused := make(chan struct{}, 1)
	l.Refused = func(net.Addr, error) { refused <- struct{}{} }
	bad := dial(t, l, nil)
	dial(t, l, header("198.51.100.7:1234"))
	c, _ := accept(t, l)
	if got := c.RemoteAddr().String(); got != "198.51.100.7:1234" {
		t.Fatalf("remote %s", got)
	}
	<-refused
	bad.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection without a header was served")
	}
}

// An untrusted peer is served as it is; a header it sends is not believed.
func TestUntrusted(t *testing.T) {
	l := listen(t, []string{"10.0.0.0/8"})
	dial(t, l, nil)
	c, line := accept(t, l)
	if ap := netip.MustParseAddrPort(c.RemoteAddr().String()); !ap.Addr().IsLoopback() || line != "hello\r\n" {
		t.Fatalf("remote %s line %q", c.RemoteAddr(), line)
	}
}

func TestClose(t *testing.T) {
	l := listen(t, nil)
	l.Close()
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept after Close")
	}
}

func TestBadRanges(t *testing.T) {
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	defer raw.Close()
	if _, err := proxylisten.Wrap(raw, []string{"not a network"}); err == nil {
		t.Fatal("accepted a bad range")
	}
}

// FromProxy and ClientTLS: only a trusted peer's header counts, ClientTLS only with the
// PP2_TYPE_SSL TLV, looking through TLS and wrappers to the accepted connection.
func TestFromProxyClientTLS(t *testing.T) {
	withTLS := header("203.0.113.9:40000")
	if err := withTLS.SetTLVs([]proxyproto.TLV{proxylisten.SSLTLV()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		trusted         []string
		h               *proxyproto.Header
		fromProxy, ctls bool
	}{
		{"trusted with TLS flag", []string{"127.0.0.0/8"}, withTLS, true, true},
		{"trusted without", []string{"127.0.0.0/8"}, header("203.0.113.9:40000"), true, false},
		{"untrusted", []string{"10.0.0.0/8"}, nil, false, false},
	} {
		l := listen(t, tc.trusted)
		dial(t, l, tc.h)
		c, _ := accept(t, l)
		wrapped := struct{ net.Conn }{c} // a wrapper without NetConn hides it
		if proxylisten.FromProxy(c) != tc.fromProxy || proxylisten.ClientTLS(c) != tc.ctls ||
			proxylisten.FromProxy(netConn{c}) != tc.fromProxy || proxylisten.FromProxy(wrapped) {
			t.Errorf("%s: FromProxy %v ClientTLS %v", tc.name, proxylisten.FromProxy(c), proxylisten.ClientTLS(c))
		}
	}
}

// netConn is a wrapper that says what it wraps, as tls.Conn does.
type netConn struct{ net.Conn }

func (c netConn) NetConn() net.Conn { return c.Conn }

// A mover's connection: its header is required and read, FromProxy holds (the master
// login), but its TLS flag is never believed, RemoteAddr stays the mover's own address,
// and the claimed client is only reported to Mover; through TLS as well.
func TestMover(t *testing.T) {
	withTLS := header("203.0.113.9:40000")
	if err := withTLS.SetTLVs([]proxyproto.TLV{proxylisten.SSLTLV()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		trusted []string
	}{
		{"mover only", []string{"10.0.0.0/8"}},
		{"in both lists: a mover", []string{"127.0.0.0/8"}},
	} {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := proxylisten.WrapWith(raw, tc.trusted, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		claimed := make(chan string, 1)
		l.Mover = func(peer, c net.Addr) { claimed <- peer.String() + " " + c.String() }
		dial(t, l, withTLS)
		c, line := accept(t, l)
		if line != "hello\r\n" {
			t.Fatalf("%s: line %q", tc.name, line)
		}
		if !proxylisten.FromProxy(c) || !proxylisten.FromProxy(netConn{c}) {
			t.Errorf("%s: a mover may use the master login", tc.name)
		}
		if proxylisten.ClientTLS(c) || proxylisten.ClientTLS(netConn{c}) {
			t.Errorf("%s: a mover's TLS flag was believed", tc.name)
		}
		if host, _, _ := net.SplitHostPort(c.RemoteAddr().String()); host != "127.0.0.1" {
			t.Errorf("%s: RemoteAddr %s, want the mover's own", tc.name, c.RemoteAddr())
		}
		if got := <-claimed; !strings.HasPrefix(got, "127.0.0.1:") || !strings.HasSuffix(got, " 203.0.113.9:40000") {
			t.Errorf("%s: Mover told %q", tc.name, got)
		}
		l.Close()
	}
}

// A mover that sends no header is dropped, as a proxy is.
func TestMoverWithoutHeader(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := proxylisten.WrapWith(raw, []string{"10.0.0.0/8"}, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	refused := make(chan net.Addr, 1)
	l.Refused = func(peer net.Addr, _ error) { refused <- peer }
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("a1 LOGIN alice secret\r\n"))
	select {
	case <-refused:
	case <-time.After(proxylisten.HeaderTimeout + 5*time.Second):
		t.Fatal("a mover without a header was not refused")
	}
	if _, err := proxylisten.WrapWith(raw, nil, []string{"not a network"}); err == nil {
		t.Fatal("accepted a bad mover range")
	}
}

// Movers without a trusted list are refused: an empty list means every peer is a proxy,
// so every peer but the movers would be believed more than them.
func TestMoversNeedTrusted(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if l, err := proxylisten.WrapWith(raw, nil, []string{"127.0.0.1"}); err == nil {
		l.Close()
		t.Fatal("movers without trusted proxies were taken")
	}
}
