package smtpd

import "time"

// DataMemory reports the bytes reserved by messages being received (tests only).
func (s *Server) DataMemory() int64 { return s.mem.held.Load() }

// SetFreeSpaceTTL sets how long a free-space reading serves and returns a func that
// restores it.
func SetFreeSpaceTTL(d time.Duration) (restore func()) {
	old := freeSpaceTTL
	freeSpaceTTL = d
	return func() { freeSpaceTTL = old }
}
