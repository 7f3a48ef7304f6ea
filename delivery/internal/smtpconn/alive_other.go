//go:build !unix

package smtpconn

func alive(s *Session) bool { return aliveByDeadline(s) }
