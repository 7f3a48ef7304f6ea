package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/store"
)

// selectState returns the UIDVALIDITY and HIGHESTMODSEQ of a SELECT's responses.
func selectState(t *testing.T, lines []string) (uidValidity uint32, highest uint64) {
	t.Helper()
	for _, l := range lines {
		fmt.Sscanf(l, "* OK [UIDVALIDITY %d]", &uidValidity)
		fmt.Sscanf(l, "* OK [HIGHESTMODSEQ %d]", &highest)
	}
	if uidValidity == 0 || highest == 0 {
		t.Fatalf("SELECT: %q", lines)
	}
	return uidValidity, highest
}

// A QRESYNC client that was away while another session flagged one message and
// expunged another learns exactly that when it selects again (RFC 7162 §3.2.5):
// VANISHED (EARLIER) with the expunged UID, a FETCH with the changed flags and modseq,
// and nothing about the messages that did not change. UID FETCH (CHANGEDSINCE VANISHED)
// says the same, and live expunges reach it as VANISHED, not EXPUNGE.
func TestQResyncAfterAbsence(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for range 4 {
		e.deliver(t, "alice@example.org", msgA)
	}
	a := dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	if lines := a.ok("ENABLE QRESYNC"); len(lines) != 1 || lines[0] != "* ENABLED QRESYNC" {
		t.Fatalf("ENABLE QRESYNC: %q", lines)
	}
	uv, h := selectState(t, a.ok("SELECT INBOX"))
	a.ok("LOGOUT")

	b := dialRaw(t, e.addr)
	b.ok(`LOGIN alice@example.org "secret pw"`)
	b.ok("SELECT INBOX")
	b.ok(`STORE 2 +FLAGS.SILENT ($Important)`)
	b.ok(`STORE 3 +FLAGS.SILENT (\Deleted)`)
	b.ok("EXPUNGE")

	a = dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("ENABLE QRESYNC")
	lines := a.ok("SELECT INBOX (QRESYNC (%d %d 1:4))", uv, h)
	var vanished, fetches []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "* VANISHED"):
			vanished = append(vanished, l)
		case strings.Contains(l, " FETCH "):
			fetches = append(fetches, l)
		}
	}
	if !slices.Equal(vanished, []string{"* VANISHED (EARLIER) 3"}) || len(fetches) != 1 ||
		!strings.HasPrefix(fetches[0], "* 2 FETCH (UID 2 FLAGS ($Important") || !strings.Contains(fetches[0], "MODSEQ (") {
		t.Fatalf("SELECT QRESYNC after absence: %q", lines)
	}
	lines = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", h)
	if len(lines) != 2 || lines[0] != "* VANISHED (EARLIER) 3" || !strings.HasPrefix(lines[1], "* 2 FETCH (UID 2 FLAGS ($Important") {
		t.Errorf("UID FETCH VANISHED: %q", lines)
	}
	// A wrong UIDVALIDITY resynchronises nothing: the client must start over.
	if lines := a.ok("SELECT INBOX (QRESYNC (%d %d))", uv+1, h); slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "* VANISHED") }) {
		t.Errorf("SELECT QRESYNC with another UIDVALIDITY: %q", lines)
	}
	// Live: another session's expunge, and this session's own, come as VANISHED.
	b.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.ok("EXPUNGE")
	if lines := a.ok("NOOP"); !slices.Contains(lines, "* VANISHED 1") || slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, "EXPUNGE") }) {
		t.Errorf("NOOP after another session's EXPUNGE: %q", lines)
	}
	a.ok(`UID STORE 4 +FLAGS.SILENT (\Deleted)`)
	if lines := a.ok("EXPUNGE"); !slices.Equal(lines, []string{"* VANISHED 4"}) {
		t.Errorf("EXPUNGE with QRESYNC: %q", lines)
	}
	// Without ENABLE QRESYNC, SELECT (QRESYNC ...) is refused.
	c := dialRaw(t, e.addr)
	c.ok(`LOGIN alice@example.org "secret pw"`)
	if _, st := c.cmd("SELECT INBOX (QRESYNC (%d %d))", uv, h); !strings.HasPrefix(st, "BAD") {
		t.Errorf("SELECT QRESYNC without ENABLE: %s", st)
	}
}

// go-imap's client resynchronises with CONDSTORE after an absence (it speaks CONDSTORE,
// not QRESYNC): SELECT (CONDSTORE) gives HIGHESTMODSEQ, FETCH (CHANGEDSINCE) returns
// exactly the message another session changed, and a conditional STORE on a message
// changed since fails with MODIFIED while the others are stored.
func TestCondStoreResyncGoIMAPClient(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for range 3 {
		e.deliver(t, "alice@example.org", msgA)
	}
	dial := func() *imapclient.Client {
		c, err := imapclient.DialInsecure(e.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Login("alice@example.org", "secret pw").Wait(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	sel, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil || sel.HighestModSeq == 0 {
		t.Fatalf("SELECT (CONDSTORE): %+v %v", sel, err)
	}
	h := sel.HighestModSeq
	c.Logout().Wait()

	other := dial()
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := other.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}

	c = dial()
	sel, err = c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil || sel.HighestModSeq <= h {
		t.Fatalf("SELECT again: %+v %v (was %d)", sel, err, h)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Flags: true, ModSeq: true, ChangedSince: h}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 || !slices.Contains(msgs[0].Flags, imap.FlagFlagged) || msgs[0].ModSeq <= h {
		t.Fatalf("FETCH CHANGEDSINCE %d: %+v %v", h, msgs, err)
	}
	cmd := c.Store(imap.SeqSetNum(1, 2, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, &imap.StoreOptions{UnchangedSince: h})
	// OK [MODIFIED 2] (the client's API does not show the code): FETCH for 1 and 3 only.
	stored, err := cmd.Collect()
	if err != nil || len(stored) != 2 || stored[0].SeqNum != 1 || stored[1].SeqNum != 3 {
		t.Errorf("conditional STORE over a changed message: %v %+v", err, stored)
	}
	msgs, err = c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(msgs) != 3 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) || slices.Contains(msgs[1].Flags, imap.FlagSeen) || !slices.Contains(msgs[2].Flags, imap.FlagSeen) {
		t.Errorf("after the conditional STORE: %+v %v", msgs, err)
	}
}

// MULTIAPPEND (RFC 3502) stores every message with one APPENDUID; when one is refused
// (too big, told before it is sent), those before it are removed: all or none.
func TestMultiAppend(t *testing.T) {
	e := startWith(t, Config{Trusted: true}, store.Config{MaxMessageSize: 1000})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	m := "Subject: m\r\n\r\nbody\r\n"
	fmt.Fprintf(r.conn, "a1 APPEND INBOX (\\Seen) {%d+}\r\n%s {%d+}\r\n%s\r\n", len(m), m, len(m), m)
	if l := r.line(); !strings.HasPrefix(l, "a1 OK [APPENDUID ") || !strings.HasSuffix(l, " 1:2] APPEND completed") {
		t.Fatalf("MULTIAPPEND: %q", l)
	}
	fmt.Fprintf(r.conn, "a2 APPEND INBOX {%d+}\r\n%s {5000}\r\n", len(m), m)
	if l := r.line(); !strings.HasPrefix(l, "a2 NO [TOOBIG]") {
		t.Fatalf("MULTIAPPEND with a message too big: %q", l)
	}
	if lines := r.ok("STATUS INBOX (MESSAGES)"); len(lines) != 1 || !strings.Contains(lines[0], "MESSAGES 2") {
		t.Errorf("after a refused MULTIAPPEND: %q", lines)
	}
}
