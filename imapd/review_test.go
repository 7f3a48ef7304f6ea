package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// An APPEND refused by the state (before login) still owns its non-synchronising
// literal: the message's lines must not run as commands (RFC 7888 §4; a message body
// with "a LOGOUT" in it is data, not a command).
func TestAppendBeforeLoginLiteralIsNotACommand(t *testing.T) {
	skipOnImapserver(t)
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	body := "i1 CAPABILITY\r\n"
	fmt.Fprintf(r.conn, "x APPEND INBOX {%d+}\r\n%s\r\n", len(body), body)
	l := r.line()
	if !strings.HasPrefix(l, "x BAD") && !strings.HasPrefix(l, "x NO") {
		t.Fatalf("APPEND before login: %q", l)
	}
	// The next line answered must be this NOOP's, not the literal's "i1 CAPABILITY".
	lines, status := r.cmd("NOOP")
	if !strings.HasPrefix(status, "OK") || len(lines) != 0 {
		t.Fatalf("after the refused APPEND: %q %q (the literal ran as a command)", lines, status)
	}
}
