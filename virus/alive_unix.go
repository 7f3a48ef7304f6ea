//go:build unix

package virus

import (
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open: clamd closes sessions idle for
// longer than its IdleTimeout, and a write to such a socket would succeed while the reply
// never comes. A non-blocking peek sees the EOF (or stray bytes, equally disqualifying).
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && ok
}
