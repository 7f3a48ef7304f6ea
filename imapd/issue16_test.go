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

// A mailbox name that is not modified UTF-7 ("a&b": an '&' shift never closed, "&Jjo"
// likewise, "&U,BTFw-&ZeVnLIqe-": a null shift) is a client error: BAD or NO saying so,
// never NO [SERVERBUG] (issue 16 item 2, fixed by go-imap v2.0.0-beta.9's parser).
//
// Left out: a LIST pattern (LIST "" "a&b"), which beta.9 still answers [SERVERBUG]
// before the session sees it (imapserver's readListMailbox returns utf7.Decode's error
// as it is).
func TestBadModifiedUTF7MailboxIsClientError(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	var cmds []string
	for _, name := range []string{`"a&b"`, `"&Jjo"`, `"&U,BTFw-&ZeVnLIqe-"`, `"INBOX/&"`} {
		cmds = append(cmds,
			"CREATE "+name, "DELETE "+name, "RENAME "+name+" x", "RENAME INBOX "+name,
			"SUBSCRIBE "+name, "UNSUBSCRIBE "+name, "STATUS "+name+" (MESSAGES)",
			"EXAMINE "+name, "SELECT "+name, "APPEND "+name+" {5}",
			`LIST `+name+` "*"`, `LSUB `+name+` "*"`,
		)
	}
	r.ok("SELECT INBOX")
	for _, name := range []string{`"a&b"`, `"&Jjo"`} {
		cmds = append(cmds, "COPY 1 "+name, "UID COPY 1 "+name, "MOVE 1 "+name, "UID MOVE 1 "+name)
	}
	for _, c := range cmds {
		lines, st := r.cmd("%s", c)
		if !strings.HasPrefix(st, "BAD") && !strings.HasPrefix(st, "NO") || strings.Contains(st, "SERVERBUG") {
			t.Errorf("%q: %s (%q)", c, st, lines)
		}
	}
	// The session is still usable, and nothing was created.
	if lines := r.ok(`LIST "" "*"`); strings.Contains(strings.Join(lines, "\n"), "&") {
		t.Errorf("LIST after bad names: %q", lines)
	}
	if lines := r.ok("FETCH 1 (UID)"); len(lines) != 1 {
		t.Errorf("FETCH after bad names: %q", lines)
	}
}
