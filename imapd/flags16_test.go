package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// appendRaw sends APPEND with a synchronising literal and returns the untagged lines.
func (r *raw) appendRaw(mailbox, flags, body string) []string {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("a%d", r.n)
	fmt.Fprintf(r.conn, "%s APPEND %s (%s) {%d}\r\n", tag, mailbox, flags, len(body))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		r.t.Fatalf("APPEND: want continuation, got %q", l)
	}
	fmt.Fprintf(r.conn, "%s\r\n", body)
	var lines []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				r.t.Fatalf("APPEND: %s (%q)", l, lines)
			}
			return lines
		}
		lines = append(lines, l)
	}
}

// index returns the position of the first line with prefix, or -1.
func index(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

// A keyword new to the mailbox is announced with an untagged FLAGS before any FETCH that
// shows it: to the session whose STORE or APPEND brought it, and to other sessions that
// have the mailbox selected at their next update (issue 16 bug 8; RFC 3501 §7.2.6, RFC
// 9051 §7.3.5). SELECT lists the mailbox's keywords in FLAGS and PERMANENTFLAGS.
func TestNewKeywordSendsFlags(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", "Subject: m1\r\n\r\nx\r\n")
	a := dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("SELECT INBOX")
	b := dialRaw(t, e.addr)
	b.ok(`LOGIN alice@example.org "secret pw"`)
	b.ok("SELECT INBOX")

	lines := a.ok(`STORE 1 +FLAGS ($Work)`)
	fl, fe := index(lines, "* FLAGS "), index(lines, "* 1 FETCH ")
	if fl < 0 || fe < 0 || fl > fe || !strings.Contains(lines[fl], "$Work") || !strings.Contains(lines[fe], "$Work") {
		t.Fatalf("STORE of a new keyword: %q, want * FLAGS with $Work before the FETCH", lines)
	}
	if lines := a.ok(`STORE 1 +FLAGS ($Work \Seen)`); index(lines, "* FLAGS ") >= 0 {
		t.Errorf("STORE of a known keyword sent FLAGS again: %q", lines)
	}
	if lines := a.ok(`STORE 1 +FLAGS.SILENT (Silent1)`); len(lines) != 1 || !strings.Contains(lines[0], "Silent1") || !strings.HasPrefix(lines[0], "* FLAGS ") {
		t.Errorf("STORE.SILENT of a new keyword: %q, want only * FLAGS", lines)
	}

	lines = b.ok("NOOP")
	fl, fe = index(lines, "* FLAGS "), index(lines, "* 1 FETCH ")
	if fl < 0 || fe < 0 || fl > fe || !strings.Contains(lines[fl], "$Work") || !strings.Contains(lines[fl], "Silent1") {
		t.Fatalf("other session after the STORE: %q, want * FLAGS with $Work and Silent1 before the FETCH", lines)
	}

	// APPEND into the selected mailbox, by this session and by another.
	lines = a.appendRaw("INBOX", `$Appended \Seen`, "Subject: m2\r\n\r\ny")
	fl, ex := index(lines, "* FLAGS "), index(lines, "* 2 EXISTS")
	if fl < 0 || ex < 0 || !strings.Contains(lines[fl], "$Appended") {
		t.Fatalf("APPEND of a new keyword: %q, want * FLAGS with $Appended and * 2 EXISTS", lines)
	}
	lines = b.ok("FETCH 2 FLAGS")
	if fl, fe = index(lines, "* FLAGS "), index(lines, "* 2 FETCH "); fl >= 0 && fe >= 0 && fl > fe {
		t.Fatalf("FLAGS after the FETCH: %q", lines)
	}
	lines = append(lines, b.ok("NOOP")...)
	if fl := index(lines, "* FLAGS "); fl < 0 || !strings.Contains(lines[fl], "$Appended") {
		t.Fatalf("other session after the APPEND: %q, want * FLAGS with $Appended", lines)
	}

	// A new SELECT lists the keywords in FLAGS and PERMANENTFLAGS.
	c := dialRaw(t, e.addr)
	c.ok(`LOGIN alice@example.org "secret pw"`)
	lines = c.ok("SELECT INBOX")
	fl, pf := index(lines, "* FLAGS "), index(lines, "* OK [PERMANENTFLAGS ")
	if fl < 0 || pf < 0 {
		t.Fatalf("SELECT: %q", lines)
	}
	for _, kw := range []string{"$Work", "Silent1", "$Appended"} {
		if !strings.Contains(lines[fl], kw) || !strings.Contains(lines[pf], kw) {
			t.Errorf("SELECT: %s missing from %q or %q", kw, lines[fl], lines[pf])
		}
	}
	if !strings.Contains(lines[pf], `\*`) {
		t.Errorf("PERMANENTFLAGS without \\*: %q", lines[pf])
	}
	// Nothing more to announce.
	if lines := c.ok("NOOP"); index(lines, "* FLAGS ") >= 0 {
		t.Errorf("NOOP after SELECT sent FLAGS: %q", lines)
	}
}

// \Recent for IMAP4rev1 sessions, as Dovecot keeps it (issue 16 bug 9): the first session
// to select the mailbox read-write after a message arrived sees it as recent, in SELECT's
// RECENT, FETCH FLAGS and SEARCH RECENT/NEW/OLD, and takes it from every later session;
// EXAMINE and STATUS count it without taking it; IMAP4rev2 sessions neither see nor take
// it.
func TestRecent(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", "Subject: m1\r\n\r\nx\r\n")
	e.deliver(t, "alice@example.org", "Subject: m2\r\n\r\nx\r\n")
	login := func() *raw {
		r := dialRaw(t, e.addr)
		r.ok(`LOGIN alice@example.org "secret pw"`)
		return r
	}
	want := func(what string, lines []string, line string, present bool) {
		t.Helper()
		if got := slices.Contains(lines, line); got != present {
			t.Errorf("%s: %q, want %q present=%v", what, lines, line, present)
		}
	}

	// A rev2 session neither sees nor takes them.
	v2 := login()
	v2.ok("ENABLE IMAP4rev2")
	lines := v2.ok("SELECT INBOX")
	want("rev2 SELECT", lines, "* 0 RECENT", false)
	want("rev2 SELECT", lines, "* 2 RECENT", false)
	if lines := v2.ok("FETCH 1:* FLAGS"); strings.Contains(strings.Join(lines, ""), `\Recent`) {
		t.Errorf("rev2 FETCH: %q", lines)
	}

	a, b := login(), login()
	want("EXAMINE", a.ok("EXAMINE INBOX"), "* 2 RECENT", true)
	a.ok("CLOSE")
	want("STATUS", b.ok("STATUS INBOX (RECENT)"), "* STATUS INBOX (RECENT 2)", true)
	want("SELECT", a.ok("SELECT INBOX"), "* 2 RECENT", true)
	want("FETCH", a.ok("FETCH 1 FLAGS"), `* 1 FETCH (UID 1 FLAGS (\Recent))`, true)
	want("SEARCH RECENT", a.ok("SEARCH RECENT"), "* SEARCH 1 2", true)
	want("SEARCH OLD", a.ok("SEARCH OLD"), "* SEARCH", true)
	a.ok(`STORE 1 +FLAGS (\Seen)`)
	want("SEARCH NEW", a.ok("SEARCH NEW"), "* SEARCH 2", true)
	want("STORE answer", a.ok(`STORE 2 +FLAGS (\Flagged)`), `* 2 FETCH (UID 2 FLAGS (\Flagged \Recent))`, true)

	want("second SELECT", b.ok("SELECT INBOX"), "* 0 RECENT", true)
	want("second SEARCH RECENT", b.ok("SEARCH RECENT"), "* SEARCH", true)
	want("STATUS after SELECT", login().ok("STATUS INBOX (RECENT)"), "* STATUS INBOX (RECENT 0)", true)

	// A new message goes to the first selected session that hears of it.
	e.deliver(t, "alice@example.org", "Subject: m3\r\n\r\nx\r\n")
	lines = a.ok("NOOP")
	want("NOOP after delivery", lines, "* 3 EXISTS", true)
	want("NOOP after delivery", lines, "* 3 RECENT", true)
	lines = b.ok("NOOP")
	want("other NOOP after delivery", lines, "* 3 EXISTS", true)
	if index(lines, "* 1 RECENT") >= 0 || index(lines, "* 3 RECENT") >= 0 {
		t.Errorf("other session also got the new message as recent: %q", lines)
	}
	want("FETCH new", b.ok("FETCH 3 FLAGS"), `* 3 FETCH (UID 3 FLAGS ())`, true)
	if lines := v2.ok("NOOP"); strings.Contains(strings.Join(lines, ""), "RECENT") {
		t.Errorf("rev2 NOOP: %q", lines)
	}
}

// The RECENT count an update sends leaves out the messages this session expunged.
func TestRecentCountAfterExpunge(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", "Subject: m1\r\n\r\nx\r\n")
	e.deliver(t, "alice@example.org", "Subject: m2\r\n\r\nx\r\n")
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	if lines := r.ok("SELECT INBOX"); !slices.Contains(lines, "* 2 RECENT") {
		t.Fatalf("SELECT: %q", lines)
	}
	r.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	r.ok("EXPUNGE")
	e.deliver(t, "alice@example.org", "Subject: m3\r\n\r\nx\r\n")
	if lines := r.ok("NOOP"); !slices.Contains(lines, "* 2 RECENT") || !slices.Contains(lines, "* 2 EXISTS") {
		t.Fatalf("NOOP after EXPUNGE and a delivery: %q, want * 2 EXISTS and * 2 RECENT", lines)
	}
}
