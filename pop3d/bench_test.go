package pop3d

import (
	"fmt"
	"testing"
)

// BenchmarkLogin is one POP3 session as a poller makes it: connect, greeting, USER, PASS
// (the maildrop of 20 messages opened and listed), UIDL, QUIT. bench/pop3.sh compares
// whole logins with IMAP's through the binary.
func BenchmarkLogin(b *testing.B) {
	e := start(b, Config{Trusted: true})
	for i := 0; i < 20; i++ {
		e.deliver(b, "bob@example.org", fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))
	}
	for b.Loop() {
		c := dial(b, e.addr)
		c.cmd("USER bob@example.org", "+OK")
		c.cmd("PASS pw2", "+OK")
		c.cmd("UIDL", "+OK")
		c.multi()
		c.cmd("QUIT", "+OK")
		c.conn.Close()
	}
}
