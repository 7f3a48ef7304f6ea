package connlimit

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
	ip3 = netip.MustParseAddr("192.0.2.3")
)

// kicks records what the pool kicked, by name.
type kicks chan string

func (k kicks) kick(name string) func(error) {
	return func(why error) { k <- name + ": " + why.Error() }
}

func (k kicks) want(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-k:
		if got != want {
			t.Fatalf("kicked %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing kicked, want %q", want)
	}
}

func (k kicks) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-k:
		t.Fatalf("kicked %q", got)
	case <-time.After(50 * time.Millisecond):
	}
}

func (p *Pool) counts() (total, login int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.login.Len()
}

// TestLimits: per address and per pool, a connection beyond the limit is refused with
// the reason; a released slot is free again, and releasing twice gives back one.
func TestLimits(t *testing.T) {
	p := NewPool(Limits{MaxConnections: 3, MaxConnectionsPerIP: 2})
	k := kicks(make(chan string, 10))
	a, err := p.Admit(ip1, k.kick("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admit(ip1, k.kick("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admit(ip1, k.kick("c")); err != ErrTooManyFromAddress {
		t.Fatalf("third from one address: %v", err)
	}
	if _, err := p.Admit(ip2, k.kick("d")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admit(ip3, k.kick("e")); err != ErrTooMany {
		t.Fatalf("fourth in the pool: %v", err)
	}
	a.Release()
	a.Release()
	if total, _ := p.counts(); total != 2 {
		t.Fatalf("%d after one release", total)
	}
	if _, err := p.Admit(ip1, k.kick("f")); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := p.Admit(ip3, k.kick("g")); err != ErrTooMany {
		t.Fatalf("pool full again: %v", err)
	}
	k.none(t)
}

// TestOldestEvicted: with MaxLoginConnections waiting to log in, a new connection is
// admitted and the one that waited longest is kicked and released; connections that
// logged in or were released no longer wait.
func TestOldestEvicted(t *testing.T) {
	p := NewPool(Limits{MaxLoginConnections: 2})
	k := kicks(make(chan string, 10))
	in, _ := p.Admit(ip1, k.kick("in"))
	in.LoggedIn()
	a, _ := p.Admit(ip1, k.kick("a"))
	gone, _ := p.Admit(ip1, k.kick("gone"))
	gone.Release()
	if _, err := p.Admit(ip1, k.kick("b")); err != nil {
		t.Fatal(err)
	}
	k.none(t)
	if a.Waiting() != true || in.Waiting() {
		t.Fatal("Waiting")
	}
	if _, err := p.Admit(ip1, k.kick("c")); err != nil {
		t.Fatal(err)
	}
	k.want(t, "a: "+ErrEvicted.Error())
	waitCounts(t, p, 3, 2) // in, b, c; b and c wait
	a.Release()            // the protocol closing it: nothing more
	waitCounts(t, p, 3, 2)
}

func waitCounts(t *testing.T, p *Pool, total, login int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		tt, l := p.counts()
		if tt == total && l == login {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("total %d, waiting %d; want %d, %d", tt, l, total, login)
		}
	}
}

// TestLoginTimeout: a connection that has not logged in within LoginTimeout is kicked
// once, however it is also evicted, and released; one that logged in is not.
func TestLoginTimeout(t *testing.T) {
	p := NewPool(Limits{LoginTimeout: 100 * time.Millisecond, MaxLoginConnections: 1})
	k := kicks(make(chan string, 10))
	in, _ := p.Admit(ip1, k.kick("in"))
	in.LoggedIn()
	if _, err := p.Admit(ip1, k.kick("late")); err != nil {
		t.Fatal(err)
	}
	k.want(t, "late: disconnected: no login within 100ms")
	waitCounts(t, p, 1, 0)

	p = NewPool(Limits{LoginTimeout: 200 * time.Millisecond, MaxLoginConnections: 1})
	p.Admit(ip1, k.kick("evicted"))
	p.Admit(ip1, k.kick("next"))
	k.want(t, "evicted: "+ErrEvicted.Error())
	k.want(t, "next: disconnected: no login within 200ms")
	k.none(t)
	waitCounts(t, p, 0, 0)
	var lt *LoginTimeoutError
	if !errors.As(error(&LoginTimeoutError{time.Second}), &lt) {
		t.Fatal("errors.As")
	}
}

// TestRefuse: the line reaches a plain connection, which is then closed.
func TestRefuse(t *testing.T) {
	a, b := net.Pipe()
	go Refuse(b, "-ERR [SYS/TEMP] too many connections")
	r := bufio.NewReader(a)
	if l, err := r.ReadString('\n'); err != nil || l != "-ERR [SYS/TEMP] too many connections\r\n" {
		t.Fatalf("%q, %v", l, err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("not closed")
	}
	if got := RemoteIP(b); got.IsValid() {
		t.Fatalf("RemoteIP of a pipe: %v", got)
	}
}

// flakyListener fails its first Accepts with errs, then returns conns until it is closed.
type flakyListener struct {
	net.Listener
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

// TestAccept: out of descriptors, Accept waits (5 ms, then twice as long) and tries
// again; a closed listener ends it.
func TestAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: &osSyscallError{syscall.EMFILE}}
	fl := &flakyListener{Listener: ln, errs: []error{emfile, emfile}}
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	var waits []time.Duration
	c, err := Accept(fl, func(err error, wait time.Duration) { waits = append(waits, wait) })
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(waits) != 2 || waits[0] != 5*time.Millisecond || waits[1] != 10*time.Millisecond {
		t.Fatalf("waits %v", waits)
	}
	if ip := RemoteIP(c); ip != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("RemoteIP %v", ip)
	}
	ln.Close()
	if _, err := Accept(fl, func(error, time.Duration) { t.Fatal("retried after Close") }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// osSyscallError is an os.SyscallError without importing os for it.
type osSyscallError struct{ err syscall.Errno }

func (e *osSyscallError) Error() string   { return "accept4: " + e.err.Error() }
func (e *osSyscallError) Unwrap() error   { return e.err }
func (e *osSyscallError) Temporary() bool { return e.err.Temporary() }

// TestKey: IPv4 (also IPv4-mapped IPv6) counts by its address, IPv6 by its network of
// the configured length, /64 by default, without a zone.
func TestKey(t *testing.T) {
	for _, c := range []struct {
		ip   string
		bits int
		want string
	}{
		{"192.0.2.1", 0, "192.0.2.1"},
		{"192.0.2.1", 48, "192.0.2.1"},
		{"::ffff:192.0.2.1", 0, "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", 0, "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff::1", 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
		{"fe80::1:2%eth0", 0, "fe80::"},
		{"::1", 0, "::"},
	} {
		if got := Key(netip.MustParseAddr(c.ip), c.bits); got.String() != c.want {
			t.Errorf("Key(%s, %d) = %s, want %s", c.ip, c.bits, got, c.want)
		}
	}
	if got := Key(netip.Addr{}, 0); got.IsValid() {
		t.Errorf("Key(zero) = %s", got)
	}
	for bits, ok := range map[int]bool{-1: false, 0: true, 64: true, 128: true, 129: false} {
		if err := CheckIPv6Prefix(bits); (err == nil) != ok {
			t.Errorf("CheckIPv6Prefix(%d) = %v", bits, err)
		}
	}
}

// TestIPv6PerNetwork: the addresses of one IPv6 /64 share MaxConnectionsPerIP, another
// /64 has its own, and an IPv4-mapped address counts as the IPv4 one; with IPv6Prefix
// 128 every address counts alone.
func TestIPv6PerNetwork(t *testing.T) {
	p := NewPool(Limits{MaxConnectionsPerIP: 2})
	k := kicks(make(chan string, 10))
	for i, ip := range []string{"2001:db8::1", "2001:db8::ffff:2"} {
		if _, err := p.Admit(netip.MustParseAddr(ip), k.kick(ip)); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	if _, err := p.Admit(netip.MustParseAddr("2001:db8::1:0:0:3"), k.kick("third")); err != ErrTooManyFromAddress {
		t.Fatalf("third from one /64: %v", err)
	}
	if _, err := p.Admit(netip.MustParseAddr("2001:db8:0:1::1"), k.kick("next /64")); err != nil {
		t.Fatalf("the next /64: %v", err)
	}
	if _, err := p.Admit(ip1, k.kick("v4")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admit(netip.MustParseAddr("::ffff:192.0.2.1"), k.kick("mapped")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admit(netip.MustParseAddr("::ffff:192.0.2.1"), k.kick("mapped 2")); err != ErrTooManyFromAddress {
		t.Fatalf("third from 192.0.2.1, mapped: %v", err)
	}
	k.none(t)

	p = NewPool(Limits{MaxConnectionsPerIP: 1, IPv6Prefix: 128})
	for _, ip := range []string{"2001:db8::1", "2001:db8::2"} {
		if _, err := p.Admit(netip.MustParseAddr(ip), k.kick(ip)); err != nil {
			t.Fatalf("%s with /128: %v", ip, err)
		}
	}
	if _, err := p.Admit(netip.MustParseAddr("2001:db8::1"), k.kick("again")); err != ErrTooManyFromAddress {
		t.Fatalf("again with /128: %v", err)
	}
}

// TestIPv6EvictionPerNetwork: a flood from many addresses of one /64 is the busiest
// "address" when a login slot is needed: its oldest connection goes, not the user's
// older one from another network.
func TestIPv6EvictionPerNetwork(t *testing.T) {
	p := NewPool(Limits{MaxLoginConnections: 4})
	k := kicks(make(chan string, 10))
	if _, err := p.Admit(netip.MustParseAddr("2001:db8:aaaa::1"), k.kick("user")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		if _, err := p.Admit(ip, k.kick(fmt.Sprint("flood", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Admit(netip.MustParseAddr("2001:db8::99"), k.kick("flood4")); err != nil {
		t.Fatal(err)
	}
	k.want(t, "flood1: "+ErrEvicted.Error())
	k.none(t)
}
