//go:build unix

package smtpconn

import (
	"errors"
	"syscall"
)

// alive checks without a round trip or a wait that the server has not closed an idle
// session (a 421 on timeout, a reset): a non-blocking peek must find nothing to read.
// Bytes or EOF mean the session is dead.
func alive(s *Session) bool {
	sc, ok := s.raw.(syscall.Conn)
	if !ok {
		return aliveByDeadline(s)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	if errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) {
		return true // nothing to read: quiet and open
	}
	// Data nobody asked for, or EOF (0 bytes, no error): dead either way.
	s.broken = true
	return false
}
