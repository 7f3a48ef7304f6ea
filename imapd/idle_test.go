package imapd

import (
	"runtime"
	"strings"
	"testing"
)

// An idling connection holds one goroutine (the one reading DONE), not one more waiting
// for the mailbox's events, and every IDLE still gets the delivery that comes meanwhile
// (idle.go). The raw test clients read synchronously: the goroutines counted are the
// server's.
func TestIdleOneGoroutinePerConnection(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxUserIPConnections: -1})
	e.deliver(t, "alice@example.org", msgA)
	const n = 20
	var rs []*raw
	for range n {
		r := dialRaw(t, e.addr)
		r.ok(`LOGIN alice@example.org "secret pw"`)
		r.ok("SELECT INBOX")
		rs = append(rs, r)
	}
	before := runtime.NumGoroutine()
	for _, r := range rs {
		r.n++
		r.conn.Write([]byte("i IDLE\r\n"))
		if l := r.line(); !strings.HasPrefix(l, "+ ") {
			t.Fatalf("IDLE: %q", l)
		}
	}
	if grew := runtime.NumGoroutine() - before; grew > n/2 {
		t.Errorf("%d IDLE connections started %d goroutines; want none each", n, grew)
	}
	e.deliver(t, "alice@example.org", msgB)
	for i, r := range rs {
		if l := r.line(); l != "* 2 EXISTS" {
			t.Fatalf("session %d in IDLE: %q, want * 2 EXISTS", i, l)
		}
		r.conn.Write([]byte("DONE\r\n"))
		for {
			l := r.line()
			if strings.HasPrefix(l, "i ") {
				if !strings.HasPrefix(l, "i OK") {
					t.Fatalf("DONE: %q", l)
				}
				break
			}
		}
		r.ok("NOOP")
	}
}
