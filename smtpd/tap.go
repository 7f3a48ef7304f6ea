package smtpd

import "sync/atomic"

// tap is go-smtp's Debug writer for one connection: go-smtp copies to it every byte it
// reads (above TLS) and every reply it writes. It looks for the one bare CR that go-smtp's
// DATA reader hides from us: in "<CRLF>.<CR>x", with x not LF, go-smtp drops the dot as
// dot-stuffing and the CR with it, so Data sees a clean "<CRLF>x". Replies cannot contain
// the pattern (each line starts with a digit), so reads and writes need not be told apart.
// Once seen, the mark stays: the client sent a bare CR, and its messages are refused.
type tap struct {
	state uint8       // how much of "\r\n.\r" was seen last
	bad   atomic.Bool // the pattern was seen, followed by something else than LF
}

func (t *tap) Write(p []byte) (int, error) {
	st := t.state
	for _, c := range p {
		switch {
		case st == 4: // "\r\n.\r" then c
			if c != '\n' {
				t.bad.Store(true)
			}
			st = 0
			if c == '\r' {
				st = 1
			}
		case c == '\r':
			if st == 3 {
				st = 4
			} else {
				st = 1
			}
		case c == '\n' && st == 1:
			st = 2
		case c == '.' && st == 2:
			st = 3
		default:
			st = 0
		}
	}
	t.state = st
	return len(p), nil
}
