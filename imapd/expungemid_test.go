package imapd

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/store"
)

// readResponse reads up to the tagged status of tag, literals included: the untagged
// responses as sent (each literal's bytes inline) and the status line.
func (r *raw) readResponse(tag string) (string, string) {
	r.t.Helper()
	var out strings.Builder
	lit := regexp.MustCompile(`\{(\d+)\}$`)
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return out.String(), strings.TrimPrefix(l, tag+" ")
		}
		out.WriteString(l)
		for m := lit.FindStringSubmatch(l); m != nil; m = lit.FindStringSubmatch(l) {
			n, _ := strconv.Atoi(m[1])
			b := make([]byte, n)
			if _, err := io.ReadFull(r.r, b); err != nil {
				r.t.Fatalf("literal of %d: %v", n, err)
			}
			out.WriteString("\r\n")
			out.Write(b)
			l = r.line()
			out.WriteString(l)
		}
		out.WriteString("\n")
	}
}

// A FETCH whose message another session expunges after the size of a section went out
// and before its bytes were read (a section whose size needs a pass over the file,
// HEADER.FIELDS; on NFS an open file another client removed reads ESTALE) still sends
// the whole literal it announced, padded, so the client stays in step; the other
// messages are answered, and the command ends NO [EXPUNGEISSUED] (RFC 5530), as when
// the message is gone before its response starts, not OK with blanks for a header.
func TestFetchExpungedMidLiteral(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")

	hooked := 0
	testHookBeforeBody = func(mf *msgFile) {
		if mf.m.UID != 1 {
			return
		}
		hooked++
		u, err := e.store.Open(context.Background(), "alice@example.org")
		if err != nil {
			t.Error(err)
			return
		}
		defer u.Release()
		if _, err := u.SetFlags(context.Background(), mf.mb, []uint32{1}, store.FlagsAdd, []string{store.FlagDeleted}, nil); err != nil {
			t.Error(err)
		}
		if del, err := u.Expunge(context.Background(), mf.mb, []uint32{1}); err != nil || len(del) != 1 {
			t.Errorf("expunge: %v %v", del, err)
		}
		// The file as a read by path (or over NFS) sees it: gone.
		mf.close()
	}
	t.Cleanup(func() { testHookBeforeBody = nil })

	r.n++
	tag := fmt.Sprintf("a%d", r.n)
	fmt.Fprintf(r.conn, "%s FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n", tag)
	got, status := r.readResponse(tag)
	testHookBeforeBody = nil
	if hooked != 1 {
		t.Fatalf("hook ran %d times", hooked)
	}
	subj := "Subject: quarterly report\r\n\r\n"
	want := fmt.Sprintf("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (\"SUBJECT\")] {%d}\r\n%s)\n"+
		"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (\"SUBJECT\")] {%d}\r\n%s)\n",
		len(subj), strings.Repeat(" ", len(subj)), len(subj), subj)
	if got != want {
		t.Errorf("responses:\n%q\nwant\n%q", got, want)
	}
	if !strings.HasPrefix(status, "NO [EXPUNGEISSUED]") {
		t.Errorf("status %q, want NO [EXPUNGEISSUED]", status)
	}
	// The session goes on, and learns of the expunge.
	if lines := r.ok("NOOP"); !strings.Contains(strings.Join(lines, "\n"), "* 1 EXPUNGE") {
		t.Errorf("NOOP after the FETCH: %q", lines)
	}
	if lines := r.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); len(lines) < 2 || !strings.HasPrefix(lines[0], "* 1 FETCH (UID 2 ") || lines[1] != "Subject: quarterly report" {
		t.Errorf("FETCH after: %q", lines)
	}
}
