package smtpd

// DataMemory reports the bytes reserved by messages being received (tests only).
func (s *Server) DataMemory() int64 { return s.mem.held.Load() }
