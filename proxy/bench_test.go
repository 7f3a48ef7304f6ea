package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/portcullis-mail/portcullis/internal/cputime"
	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/proxy"
)

// BenchmarkIMAP measures, side by side, an IMAP session (connect, TLS, login, logout)
// and commands (NOOP, FETCH of a 20 KB message) directly against the back-end and through the proxy: the
// difference is the proxy's cost per session and per command (issue 21 wants under
// 10% of a direct connection's CPU; cpu-µs/op is the CPU of the whole process: client,
// proxy and back-end). The back-end is the real imapd in this process,
// the authenticator a map, so the login costs no password hash either way.
// "proxied" reaches the back-end over TLS, "proxied-plain" over a plaintext link
// (Backend.TLS false, a trusted network).
func BenchmarkIMAP(b *testing.B) {
	e := start(b, proxy.Config{}, users)
	// A 20 KB message for the FETCHes (the same store behind both back-ends).
	mailboxtest.Deliver(b, e.st, "alice@example.org", "Subject: bench\r\n\r\n"+strings.Repeat(strings.Repeat("x", 98)+"\r\n", 200))
	direct := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", e.backendIMAP)
		if err != nil {
			b.Fatal(err)
		}
		// The back-end takes PROXY headers from 127.0.0.1: a direct client sends one too.
		h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.2:1")), c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			b.Fatal(err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		r := bufio.NewReader(tc)
		expectB(b, r, "* OK")
		return tc, r
	}
	proxied := func() (net.Conn, *bufio.Reader) {
		raw, err := net.Dial("tcp", e.imapAddr)
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(raw)
		expectB(b, r, "* OK")
		fmt.Fprintf(raw, "s STARTTLS\r\n")
		expectB(b, r, "s OK")
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		return tc, bufio.NewReader(tc)
	}
	// The same proxy, with the user on the plaintext link to the same back-end.
	ep := start(b, proxy.Config{}, dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "plain"}})
	mailboxtest.Deliver(b, ep.st, "alice@example.org", "Subject: bench\r\n\r\n"+strings.Repeat(strings.Repeat("x", 98)+"\r\n", 200))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go ep.px.ServeIMAP(ln, true)
	// Implicit TLS, as the direct client has: the proxy's STARTTLS round trip is not
	// counted against it.
	proxiedPlain := func() (net.Conn, *bufio.Reader) {
		tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(tc)
		expectB(b, r, "* OK")
		return tc, r
	}
	for _, bc := range []struct {
		name string
		dial func() (net.Conn, *bufio.Reader)
	}{{"direct", direct}, {"proxied", proxied}, {"proxied-plain", proxiedPlain}} {
		b.Run("session/"+bc.name, func(b *testing.B) {
			cpu0 := cputime.Used()
			for b.Loop() {
				c, r := bc.dial()
				fmt.Fprintf(c, "a LOGIN alice@example.org \"secret pw\"\r\n")
				expectB(b, r, "a OK")
				fmt.Fprintf(c, "b LOGOUT\r\n")
				expectB(b, r, "b OK")
				c.Close()
			}
			reportCPU(b, cpu0)
		})
		b.Run("fetch20k/"+bc.name, func(b *testing.B) {
			c, r := bc.dial()
			defer c.Close()
			fmt.Fprintf(c, "a LOGIN alice@example.org \"secret pw\"\r\n")
			expectB(b, r, "a OK")
			fmt.Fprintf(c, "s SELECT INBOX\r\n")
			expectB(b, r, "s OK")
			cpu0 := cputime.Used()
			for b.Loop() {
				fmt.Fprintf(c, "f FETCH 1 BODY.PEEK[]\r\n")
				expectB(b, r, "f OK")
			}
			reportCPU(b, cpu0)
		})
		b.Run("noop/"+bc.name, func(b *testing.B) {
			c, r := bc.dial()
			defer c.Close()
			fmt.Fprintf(c, "a LOGIN alice@example.org \"secret pw\"\r\n")
			expectB(b, r, "a OK")
			cpu0 := cputime.Used()
			for b.Loop() {
				fmt.Fprintf(c, "n NOOP\r\n")
				expectB(b, r, "n OK")
			}
			reportCPU(b, cpu0)
		})
	}
}

// reportCPU reports the process's CPU time per operation since cpu0: client, proxy and
// back-end together, as they all run here; the proxied minus the direct figure is the
// proxy's own.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((cputime.Used()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func expectB(b *testing.B, r *bufio.Reader, prefix string) {
	b.Helper()
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			b.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(l, prefix) {
			return
		}
	}
}
