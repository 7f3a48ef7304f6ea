package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// An APPEND of a literal8 (BINARY) or a CATENATE TEXT part whose client stops sending
// does not hold the server's memory budget (Config.FetchMemory) while it waits: other
// users' FETCH goes on. The message was held in the budget from the literal's announce,
// so one stalled client made every FETCH body wait 30 s and fail with NO [UNAVAILABLE]
// for as long as the literal's read deadline (30 minutes).
func TestStalledAppendHoldsNoMemory(t *testing.T) {
	for _, stall := range []string{"APPEND INBOX ~{200000}", "APPEND INBOX CATENATE (TEXT {200000}"} {
		t.Run(strings.Fields(stall)[2], func(t *testing.T) {
			e := start(t, Config{Trusted: true, FetchMemory: 256 << 10})
			e.deliver(t, "bob@example.org", msgA)
			a := dialRaw(t, e.addr)
			a.ok(`LOGIN alice@example.org "secret pw"`)
			fmt.Fprintf(a.conn, "s1 %s\r\n", stall)
			if l := a.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("%s: %q", stall, l)
			}
			// alice sends nothing more; bob reads his message.
			b := dialRaw(t, e.addr)
			b.ok(`LOGIN bob@example.org pw2`)
			b.conn.SetDeadline(time.Now().Add(45 * time.Second)) // past memWait: its NO shows
			b.ok("SELECT INBOX")
			b.ok("FETCH 1 BODY[]")
		})
	}
}
