package imapd

import (
	"strings"
	"testing"
)

// TestNoServerBugForClientErrors sends commands a client gets wrong — bad mailbox names,
// missing mailboxes and messages, malformed SASL, sections that do not exist, unknown
// encodings — and checks that none is answered NO [SERVERBUG] (issue 15 item 12): each
// gets a NO or BAD that says what is wrong.
// With them the three that go-imap's imapserver (v2.0.0-beta.9), which served IMAP
// before imapd's own layer, answered [SERVERBUG] before the session saw them: a LIST
// pattern that is not modified UTF-7, an AUTHENTICATE initial response that is not
// base64, and an APPEND date-time that does not parse.
func TestNoServerBugForClientErrors(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "bob@example.org", "Subject: a\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nbody\r\n")
	pre := dialRaw(t, e.addr)
	for _, c := range []string{"AUTHENTICATE PLAIN =", "AUTHENTICATE PLAIN AGJvYgB3cm9uZw==", "AUTHENTICATE X-UNKNOWN", "AUTHENTICATE PLAIN !!notbase64", "LOGIN \"\" \"\"", "LOGIN a b c", "ENABLE IMAP4rev2", "SELECT INBOX"} {
		if _, st := pre.cmd("%s", c); strings.Contains(st, "SERVERBUG") {
			t.Errorf("%q: %s", c, st)
		}
	}
	r := dialRaw(t, e.addr)
	r.ok("LOGIN bob@example.org pw2")
	long := strings.Repeat("x", 2000)
	cmds := []string{
		`CREATE ""`, `CREATE "/"`, `CREATE "a//b"`, `CREATE "../x"`, `CREATE INBOX`, `CREATE "INBOX/sub"`,
		`CREATE "` + long + `"`, `CREATE "x"`, `CREATE "x"`, `CREATE "a\\b"`, `CREATE "a*b"`, `CREATE "a%b"`, `CREATE ".hidden"`, `CREATE "a/."`, `CREATE "a/.."`,
		`DELETE INBOX`, `DELETE nonexist`, `DELETE ""`,
		`RENAME INBOX y`, `RENAME nonexist y`, `RENAME x x`, `RENAME x "a/../b"`, `RENAME Sent Drafts`, `RENAME x ""`,
		`SUBSCRIBE nonexist`, `UNSUBSCRIBE nonexist`, `SUBSCRIBE ""`,
		`STATUS nonexist (MESSAGES)`, `STATUS "" (MESSAGES)`,
		`SELECT ""`, `SELECT nonexist`, `EXAMINE nonexist`,
		"APPEND nonexist {5+}\r\nhello", "APPEND INBOX (\\Foo) {5+}\r\nhello",
		"APPEND \"\" {5+}\r\nhello", "APPEND INBOX {0+}\r\n", "APPEND INBOX \"31-Foo-2020 25:00:00 +0000\" {5+}\r\nhello",
		`LIST "" "%%%%%%%%%%%%%%%%%*"`, `LIST "" "&Jjo"`, `LIST "" "a&-*&"`, `LSUB "" "*"`,
		`SELECT INBOX`,
		`COPY 1 nonexist`, `COPY 999 INBOX`, `COPY 1 ""`,
		`STORE 1 +FLAGS (\Foo)`, `STORE 1 +FLAGS (\Recent)`, `STORE 1 FLAGS (a]b)`, `STORE 999 +FLAGS (\Seen)`,
		`FETCH 1 (BODY[1.2.3.4.5])`, `FETCH 1 (BINARY[9])`, `FETCH 1 (BINARY.SIZE[1])`, `FETCH 1 (BINARY[])`, `FETCH 99 (FLAGS)`, `FETCH 1 (BODY[]<4294967295.1>)`,
		`FETCH 1 (BODY[0])`, `FETCH 1 (BINARY[0])`, `FETCH 1 (BODY[1.MIME])`, `FETCH 1 (BODY[MIME])`,
		`UID EXPUNGE 1:*`, `SEARCH CHARSET X-UNKNOWN TEXT foo`, `SEARCH HEADER "" ""`, `SEARCH TEXT "a&b"`,
		`ENABLE FOO`, `NAMESPACE`, `UNSELECT`, `CLOSE`, `MOVE 1 x`,
	}
	for _, c := range cmds {
		if _, st := r.cmd("%s", c); strings.Contains(st, "SERVERBUG") {
			t.Errorf("%q: %s", c, st)
		}
	}
}

// TestAuthenticateWrongPassword: AUTHENTICATE PLAIN with a wrong password is NO
// [AUTHENTICATIONFAILED] (RFC 9051 §6.2.2), as LOGIN's, not BAD [CLIENTBUG]: the
// response was well formed. A proxy in front takes BAD for a protocol failure.
func TestAuthenticateWrongPassword(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	// bob@example.org / wrong
	if _, st := r.cmd("AUTHENTICATE PLAIN AGJvYkBleGFtcGxlLm9yZwB3cm9uZw=="); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("AUTHENTICATE PLAIN, wrong password: %q, want NO [AUTHENTICATIONFAILED]", st)
	}
	if _, st := r.cmd("AUTHENTICATE PLAIN !!notbase64"); !strings.HasPrefix(st, "BAD") {
		t.Errorf("AUTHENTICATE PLAIN, not base64: %q, want BAD", st)
	}
}
