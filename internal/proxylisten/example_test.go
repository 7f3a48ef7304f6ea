package proxylisten_test

import (
	"fmt"
	"net"
	"net/netip"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/portcullis-mail/portcullis/internal/proxylisten"
)

// A back-end's listener trusting the proxy on 127.0.0.1: the connection's RemoteAddr is
// the client the proxy names.
func Example() {
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	ln, err := proxylisten.Wrap(raw, []string{"127.0.0.1/32"})
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.5:50000")), c.RemoteAddr())
		h.WriteTo(c)
		c.Read(make([]byte, 1)) // wait for the server to close
	}()
	c, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println(c.RemoteAddr())
	// Output: 203.0.113.5:50000
}
