package smtpconn

import (
	"errors"
	"os"
	"time"
)

// aliveByDeadline is alive for connections without a file descriptor: a read with a
// very short deadline must time out.
func aliveByDeadline(s *Session) bool {
	var b [1]byte
	if err := s.raw.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return false
	}
	n, err := s.raw.Read(b[:])
	s.raw.SetReadDeadline(time.Time{})
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	s.broken = true
	return false
}
