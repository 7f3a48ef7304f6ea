package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// LIST "" "" answers the hierarchy delimiter and the root name (RFC 3501 §6.3.8), also
// when imapserver has dropped the empty pattern before the session sees it (issue 16
// item 1).
func TestListEmptyPatternGivesDelimiter(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	for _, c := range []string{`LIST "" ""`, `LIST INBOX ""`} {
		lines := r.ok("%s", c)
		if len(lines) != 1 || lines[0] != `* LIST (\Noselect) "/" ""` {
			t.Errorf("%s: %q, want one `* LIST (\\Noselect) \"/\" \"\"`", c, lines)
		}
	}
	lines := r.ok(`LIST "" "*"`)
	if len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), "INBOX") {
		t.Errorf(`LIST "" "*" after LIST "" "": %q`, lines)
	}
}

// MOVE into the selected mailbox answers OK with COPYUID, as Dovecot does: the messages
// get new UIDs in the same mailbox, keep their flags, and the old UIDs are expunged
// (issue 16 item 3; it answered NO [SERVERBUG]).
func TestMoveIntoSelectedMailbox(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for i := 0; i < 3; i++ {
		e.deliver(t, "alice@example.org", fmt.Sprintf("Subject: m%d\r\n\r\nx\r\n", i+1))
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	r.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	lines := r.ok("MOVE 2 inbox")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "* OK [COPYUID ") || !strings.Contains(lines[0], " 2 4]") || lines[1] != "* 2 EXPUNGE" {
		t.Fatalf("MOVE into INBOX: %q", lines)
	}
	lines = r.ok("UID MOVE 1 INBOX")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "* OK [COPYUID ") || !strings.Contains(lines[0], " 1 5]") || lines[1] != "* 1 EXPUNGE" {
		t.Fatalf("UID MOVE into INBOX: %q", lines)
	}
	r.ok("NOOP")
	lines = r.ok("FETCH 1:* (UID FLAGS)")
	if got := strings.Join(lines, "|"); got != `* 1 FETCH (UID 3 FLAGS ())|* 2 FETCH (UID 4 FLAGS (\Flagged))|* 3 FETCH (UID 5 FLAGS ())` {
		t.Fatalf("after MOVE into INBOX: %q", got)
	}
	lines = r.ok("STATUS INBOX (MESSAGES UIDNEXT)")
	if len(lines) != 1 || !strings.Contains(lines[0], "MESSAGES 3") || !strings.Contains(lines[0], "UIDNEXT 6") {
		t.Fatalf("status %q", lines)
	}
}
