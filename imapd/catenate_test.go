package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// catRaw sends an APPEND ... CATENATE command whose TEXT parts are synchronising
// literals: each waits for the server's continuation request.
func catRaw(t *testing.T, r *raw, head string, parts ...string) (string, []string) {
	t.Helper()
	r.n++
	tag := fmt.Sprintf("a%d", r.n)
	r.conn.SetDeadline(time.Now().Add(30 * time.Second))
	line := tag + " " + head + " CATENATE ("
	for i, p := range parts {
		if i > 0 {
			line += " "
		}
		if url, ok := strings.CutPrefix(p, "URL "); ok {
			line += "URL " + url
			continue
		}
		line += fmt.Sprintf("TEXT {%d}\r\n", len(p))
		fmt.Fprint(r.conn, line)
		l := r.line()
		if !strings.HasPrefix(l, "+") {
			return l, nil
		}
		line = p
	}
	fmt.Fprint(r.conn, line+")\r\n")
	var lines []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return strings.TrimPrefix(l, tag+" "), lines
		}
		lines = append(lines, l)
	}
}

// CATENATE (RFC 4469): a message made of TEXT parts and URLs naming the user's messages
// and sections (with UIDVALIDITY, SECTION, PARTIAL; absolute ones when they name the
// user on this server); a URL that names nothing of the user's is NO [BADURL] and stores
// nothing, also within a MULTIAPPEND; a missing mailbox is NO
// [TRYCREATE]; the session goes on after a refusal, a synchronising literal after the
// bad URL never requested and a LITERAL+ one skipped.
func TestCatenate(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	if lines := r.ok("CAPABILITY"); !strings.Contains(lines[0], " CATENATE ") {
		t.Fatalf("CATENATE not announced: %q", lines)
	}
	lines := r.ok("EXAMINE INBOX")
	var uidv uint32
	for _, l := range lines {
		fmt.Sscanf(l, "* OK [UIDVALIDITY %d]", &uidv)
	}
	r.ok("CLOSE")
	hdr := msgA[:strings.Index(msgA, "\r\n\r\n")+4]
	for _, c := range []struct {
		head  string
		parts []string
		want  string // the stored message, or the start of the status
	}{
		{"APPEND INBOX (\\Flagged)", []string{"From: x\r\n\r\n", "hello\r\n"}, "From: x\r\n\r\nhello\r\n"},
		{"APPEND INBOX", []string{`URL "/INBOX/;uid=1/;section=HEADER"`, "body\r\n"}, hdr + "body\r\n"},
		{"APPEND INBOX", []string{fmt.Sprintf(`URL "imap://alice%%40example.org@localhost/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=TEXT/;PARTIAL=4.7"`, uidv), "\r\n"}, "figures\r\n"},
		{"APPEND INBOX", []string{`URL "imap://Alice@Example.org;AUTH=*@127.0.0.1:143/INBOX/;UID=1/;SECTION=TEXT/;PARTIAL=4.7"`, "\r\n"}, "figures\r\n"},
		// RFC 4469 §5: a URL naming another user, an anonymous login or another
		// server names nothing of this user's (it was copied from alice's own INBOX).
		{"APPEND INBOX", []string{`URL "imap://bob%40example.org@localhost/INBOX/;UID=1"`}, "NO [BADURL imap://bob%40example.org@localhost/INBOX/;UID=1]"},
		{"APPEND INBOX", []string{`URL "imap://alice@localhost/INBOX/;UID=1"`}, "NO [BADURL imap://alice@localhost/"},
		{"APPEND INBOX", []string{`URL "imap://localhost/INBOX/;UID=1"`}, "NO [BADURL imap://localhost/"},
		{"APPEND INBOX", []string{`URL "imap://alice%40example.org@imap.elsewhere.example/INBOX/;UID=1"`}, "NO [BADURL imap://alice%40example.org@imap.elsewhere.example/"},
		{"APPEND INBOX", []string{`URL "imap://alice%40example.org@192.0.2.1/INBOX/;UID=1"`}, "NO [BADURL"},
		{"APPEND INBOX", []string{"x: 1\r\n", `URL "/INBOX;uidvalidity=1/;uid=1/;section=header"`, "never sent"}, "NO [BADURL /INBOX;uidvalidity=1/;uid=1/;section=header]"},
		{"APPEND INBOX", []string{`URL "/INBOX/;uid=9"`}, "NO [BADURL /INBOX/;uid=9]"},
		{"APPEND INBOX", []string{`URL "/INBOX/;uid=1/;section=1.HEADER.FIELDS%20(From)"`}, "NO [BADURL"},
		{"APPEND Nope", []string{"x\r\n", `URL "/INBOX/;uid=1"`}, "NO [TRYCREATE]"},
	} {
		st, _ := catRaw(t, r, c.head, c.parts...)
		if strings.HasPrefix(c.want, "NO ") {
			if !strings.Contains(st, c.want) {
				t.Errorf("%s %q: %s, want %s", c.head, c.parts, st, c.want)
			}
			continue
		}
		var uid uint32
		if _, err := fmt.Sscanf(st, "OK [APPENDUID %d %d]", &uidv, &uid); err != nil {
			t.Fatalf("%s %q: %s", c.head, c.parts, st)
		}
		r.ok("EXAMINE INBOX")
		got := r.ok("UID FETCH %d BODY.PEEK[]", uid)
		if body := strings.Join(got[1:len(got)-1], "\r\n") + "\r\n"; !strings.HasSuffix(got[0], fmt.Sprintf("{%d}", len(c.want))) || body != c.want {
			t.Errorf("%s %q stored %q, want %q", c.head, c.parts, got, c.want)
		}
		r.ok("CLOSE")
	}
	// MULTIAPPEND: all or none; the LITERAL+ text after the bad URL is skipped.
	before := r.ok("STATUS INBOX (MESSAGES)")
	var st string
	_, st = r.cmd("APPEND INBOX CATENATE (TEXT {3+}\r\nab\n) CATENATE (URL \"/INBOX/;uid=99\" TEXT {3+}\r\nxyz)")
	if !strings.HasPrefix(st, "NO [BADURL") {
		t.Errorf("MULTIAPPEND with a bad URL: %s", st)
	}
	if after := r.ok("STATUS INBOX (MESSAGES)"); after[0] != before[0] {
		t.Errorf("MULTIAPPEND stored some: %q then %q", before, after)
	}
}
