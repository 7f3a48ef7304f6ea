// Package sockaddr opens the listening sockets of portcullis's servers from addresses
// written as Postfix writes them: "unix:/path" for a unix socket, "host:port" (or
// "inet:host:port") for TCP. The SMTP server's LMTP listeners and the Postfix doors
// (policyd, milter) share it, so a unix socket is replaced, and made reachable, the
// same way everywhere.
package sockaddr

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Split returns the network and address net.Listen takes: "unix" and the path for
// "unix:/path", "tcp" and host:port otherwise (an "inet:" prefix is dropped).
func Split(addr string) (network, address string) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", p
	}
	return "tcp", strings.TrimPrefix(addr, "inet:")
}

// IsUnix reports whether addr names a unix socket.
func IsUnix(addr string) bool { return strings.HasPrefix(addr, "unix:") }

// Listen opens addr: TCP with listenTCP (net.Listen when nil), or a unix socket. A
// socket file left by a server that died is removed first; one that answers belongs to a
// running server and is an error; anything else in the way is not ours and is left for
// net.Listen to refuse. The new socket is mode 0666, as Postfix's public sockets and
// Dovecot's lmtp socket: whoever can reach its directory may connect (Postfix's smtpd
// runs as another user).
func Listen(addr string, listenTCP func(network, address string) (net.Listener, error)) (net.Listener, error) {
	network, address := Split(addr)
	if network == "tcp" {
		if listenTCP == nil {
			listenTCP = net.Listen
		}
		return listenTCP("tcp", address)
	}
	if address == "" || address[0] != '/' {
		return nil, fmt.Errorf("unix socket %q: want unix:/absolute/path", addr)
	}
	if fi, err := os.Lstat(address); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another server", address)
		}
		_ = os.Remove(address)
	}
	ln, err := net.Listen("unix", address)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(address, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
