package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/store"
)

const msgA = "From: Ann <ann@example.org>\r\nTo: alice@example.org\r\nSubject: quarterly report\r\nDate: Mon, 02 Jan 2026 10:00:00 +0000\r\nMessage-ID: <a@example.org>\r\n\r\nThe figures are in the attachment. Zebra.\r\n"
const msgB = "From: bob@example.org\r\nSubject: lunch\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 at noon?\r\n"

func TestLoginRequiresTLS(t *testing.T) {
	e := start(t, Config{})
	r := dialRaw(t, e.addr)
	lines, _ := r.cmd("CAPABILITY")
	if !strings.Contains(lines[0], "LOGINDISABLED") || !strings.Contains(lines[0], "STARTTLS") {
		t.Fatalf("capabilities before TLS: %q", lines)
	}
	if _, st := r.cmd(`LOGIN alice@example.org "secret pw"`); !strings.HasPrefix(st, "NO [PRIVACYREQUIRED]") {
		t.Fatalf("plaintext LOGIN: %s", st)
	}
	r.starttls()
	if _, st := r.cmd(`LOGIN alice@example.org wrong`); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("bad password: %s", st)
	}
	r.ok(`LOGIN alice@example.org "secret pw"`)
}

func login(t *testing.T, e *env, user, pass string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}, UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientFlow(t *testing.T) {
	e := start(t, Config{})
	e.deliver(t, "alice@example.org", msgA)
	e.deliver(t, "alice@example.org", msgB)
	c := login(t, e, "alice@example.org", "secret pw", nil)
	if !c.Caps().Has(imap.CapIMAP4rev2) || !c.Caps().Has(imap.CapMove) || !c.Caps().Has(imap.CapUIDPlus) {
		t.Fatalf("caps %v", c.Caps())
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Fatalf("namespace %+v %v", ns, err)
	}
	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]string{}
	for _, l := range list {
		for _, a := range l.Attrs {
			if a == imap.MailboxAttrSent || a == imap.MailboxAttrTrash || a == imap.MailboxAttrJunk || a == imap.MailboxAttrDrafts {
				uses[l.Mailbox] = string(a)
			}
		}
	}
	if fmt.Sprint(uses) != `map[Drafts:\Drafts Junk:\Junk Sent:\Sent Trash:\Trash]` {
		t.Fatalf("special use %v", uses)
	}
	if err := c.Create("Projects/2026", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	body := "Subject: draft\r\n\r\nappended body\r\n"
	ac := c.Append("Projects/2026", int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, "$Work"}, Time: date})
	io.WriteString(ac, body)
	ac.Close()
	ad, err := ac.Wait()
	if err != nil || ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("append %+v %v", ad, err)
	}
	// RFC 3501 §6.3.11: APPEND to a missing mailbox fails with TRYCREATE (no implicit create).
	ac = c.Append("Nope", 1, nil)
	io.WriteString(ac, "z")
	ac.Close()
	var ie *imap.Error
	if _, err := ac.Wait(); !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeTryCreate {
		t.Fatalf("append to a missing mailbox: %v, want NO [TRYCREATE]", err)
	}
	if _, err := c.Status("Nope", &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
		t.Fatal("append to a missing mailbox created it")
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 2 || sd.UIDNext != 3 {
		t.Fatalf("select %+v %v", sd, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Envelope: true, Flags: true, RFC822Size: true, UID: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("fetch %d %v", len(msgs), err)
	}
	if msgs[0].Envelope.Subject != "quarterly report" || msgs[0].RFC822Size != int64(len(msgA)) || !slices.Equal(msgs[0].Flags, []imap.Flag{`\Recent`}) {
		t.Fatalf("fetch 1: %+v", msgs[0])
	}
	if got := string(msgs[0].FindBodySection(&imap.FetchItemBodySection{})); got != msgA {
		t.Fatalf("body %q", got)
	}
	// The envelope is now cached; a second fetch must give the same.
	again, _ := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if again[0].Envelope.Subject != "quarterly report" || again[0].Envelope.From[0].Addr() != "ann@example.org" {
		t.Fatalf("cached envelope %+v", again[0].Envelope)
	}
	// SEARCH in body text, decoded (quoted-printable, latin-1).
	for q, want := range map[string]string{"zebra": "[1]", "café": "[2]", "lunch": "[2]"} {
		sr, err := c.Search(&imap.SearchCriteria{Text: []string{q}}, nil).Wait()
		if err != nil || fmt.Sprint(sr.AllSeqNums()) != want {
			t.Fatalf("search %q = %v %v", q, sr.AllSeqNums(), err)
		}
	}
	sr, _ := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "REPORT"}}}, nil).Wait()
	if fmt.Sprint(sr.AllUIDs()) != "[1]" {
		t.Fatalf("header search %v", sr.AllUIDs())
	}
	// FETCH BODY[] (not peek) sets \Seen and reports it.
	msgs, _ = c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if len(msgs) != 1 || !hasIMAPFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("implicit seen: %+v", msgs)
	}
	sr, _ = c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if fmt.Sprint(sr.AllSeqNums()) != "[1]" {
		t.Fatalf("unseen %v", sr.AllSeqNums())
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Important"}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	cd, err := c.Copy(imap.SeqSetNum(1), "Projects/2026").Wait()
	if err != nil || fmt.Sprint(cd.DestUIDs) != "2" {
		t.Fatalf("copy %+v %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Missing").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("copy to missing: %v", err)
	}
	st, err := c.Status("Projects/2026", &imap.StatusOptions{NumMessages: true, UIDNext: true, Size: true, NumUnseen: true}).Wait()
	if err != nil || *st.NumMessages != 2 || st.UIDNext != 3 || *st.NumUnseen != 2 {
		t.Fatalf("status %+v %v", st, err)
	}
	c.Select("Projects/2026", nil).Wait()
	msgs, _ = c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true, InternalDate: true}).Collect()
	if !msgs[0].InternalDate.Equal(date) || !hasIMAPFlag(msgs[0].Flags, "$Work") || !hasIMAPFlag(msgs[1].Flags, "$Important") {
		t.Fatalf("appended/copied: %+v %+v", msgs[0], msgs[1])
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("Projects", "Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status("Archive/2026", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("../../etc", nil).Wait(); err == nil {
		t.Fatal("created ../../etc")
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Fatal("deleted INBOX")
	}
	c.Logout().Wait()
}

func hasIMAPFlag(fs []imap.Flag, f imap.Flag) bool {
	for _, x := range fs {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

// EXAMINE is truly read-only: no STORE, EXPUNGE, MOVE, no implicit \Seen, and CLOSE does
// not expunge. (imapmemserver fails all of these.)
func TestExamineReadOnly(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	r.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	lines := r.ok("EXAMINE INBOX")
	if !strings.Contains(strings.Join(lines, "\n"), "[PERMANENTFLAGS ()]") {
		t.Fatalf("EXAMINE permanent flags: %q", lines)
	}
	if _, st := r.cmd(`STORE 1 +FLAGS (\Seen)`); !strings.HasPrefix(st, "NO") {
		t.Fatalf("STORE in EXAMINE: %s", st)
	}
	lines = r.ok("FETCH 1 BODY[]")
	if strings.Contains(strings.Join(lines, "\n"), `\Seen`) {
		t.Fatalf("FETCH BODY[] in EXAMINE set \\Seen: %q", lines)
	}
	if _, st := r.cmd("EXPUNGE"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("EXPUNGE in EXAMINE: %s", st)
	}
	if _, st := r.cmd("MOVE 1 Trash"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("MOVE in EXAMINE: %s", st)
	}
	r.ok("CLOSE")
	lines = r.ok("SELECT INBOX")
	if !strings.Contains(strings.Join(lines, "\n"), "* 1 EXISTS") {
		t.Fatalf("CLOSE after EXAMINE expunged: %q", lines)
	}
	lines = r.ok("FETCH 1 FLAGS")
	if f := strings.Join(lines, "\n"); strings.Contains(f, `\Seen`) || !strings.Contains(f, `\Deleted`) {
		t.Fatalf("flags after EXAMINE: %q", f)
	}
}

// MOVE answers COPYUID and exactly one EXPUNGE per moved message, with sequence numbers
// that account for the previous EXPUNGEs, and Poll does not repeat them.
func TestMoveExactExpunges(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for i := 0; i < 5; i++ {
		e.deliver(t, "alice@example.org", fmt.Sprintf("Subject: m%d\r\n\r\nx\r\n", i+1))
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	lines := r.ok("MOVE 2,4 Trash")
	want := []string{"* OK [COPYUID", "* 2 EXPUNGE", "* 3 EXPUNGE"}
	if len(lines) != 3 {
		t.Fatalf("MOVE responses %q", lines)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Fatalf("MOVE responses %q, want %q", lines, want)
		}
	}
	if !strings.Contains(lines[0], "2,4 1:2]") && !strings.Contains(lines[0], "2,4 1,2]") {
		t.Fatalf("COPYUID %q", lines[0])
	}
	if lines := r.ok("NOOP"); len(lines) != 0 {
		t.Fatalf("NOOP after MOVE repeated updates: %q", lines)
	}
	lines = r.ok("UID MOVE 5 Trash")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "* 3 EXPUNGE") {
		t.Fatalf("UID MOVE %q", lines)
	}
	lines = r.ok("FETCH 1:* (UID)")
	if strings.Join(lines, "|") != "* 1 FETCH (UID 1)|* 2 FETCH (UID 3)" {
		t.Fatalf("remaining %q", lines)
	}
	r.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	lines = r.ok("EXPUNGE")
	if strings.Join(lines, "|") != "* 1 EXPUNGE" {
		t.Fatalf("EXPUNGE %q", lines)
	}
	lines = r.ok("STATUS Trash (MESSAGES UIDNEXT)")
	if !strings.Contains(lines[0], "MESSAGES 3") || !strings.Contains(lines[0], "UIDNEXT 4") {
		t.Fatalf("trash status %q", lines)
	}
}

// IDLE sessions see deliveries, other sessions' flag changes and expunges (and POP3 or
// delivery go through the same store events).
func TestIdleSeesOtherSessionsAndDelivery(t *testing.T) {
	e := start(t, Config{})
	e.deliver(t, "alice@example.org", msgA)
	var mu sync.Mutex
	var events []string
	note := func(s string) {
		mu.Lock()
		events = append(events, s)
		mu.Unlock()
	}
	h := &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { note(fmt.Sprintf("EXPUNGE %d", seq)) },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				note(fmt.Sprintf("EXISTS %d", *d.NumMessages))
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			if buf != nil {
				note(fmt.Sprintf("FETCH %d %v", m.SeqNum, buf.Flags))
			}
		},
	}
	a := login(t, e, "alice@example.org", "secret pw", h)
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}
	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := strings.Join(events, ",")
			mu.Unlock()
			if strings.Contains(got, want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("IDLE did not see %q; saw %q", want, events)
	}
	e.deliver(t, "alice@example.org", msgB)
	wait("EXISTS 2")
	b := login(t, e, "alice@example.org", "secret pw", nil)
	b.Select("INBOX", nil).Wait()
	if err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	wait(`FETCH 1 [\Flagged \Recent]`) // recent to a, which had INBOX selected first
	b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close()
	if err := b.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	wait("EXPUNGE 1")
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Fatalf("after idle: %+v %v", msgs, err)
	}
}

// Two IMAP sessions, delivery and concurrent flag changes and expunges: at the end both
// sessions' views agree with the store.
func TestConcurrentSessionsConsistent(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for i := 0; i < 10; i++ {
		e.deliver(t, "bob@example.org", fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))
	}
	r1, r2 := dialRaw(t, e.addr), dialRaw(t, e.addr)
	for _, r := range []*raw{r1, r2} {
		r.ok(`LOGIN bob@example.org pw2`)
		r.ok("SELECT INBOX")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			if _, err := e.store.Deliver(context.Background(), "bob@example.org", "", strings.NewReader("Subject: new\r\n\r\ny\r\n"), nil); err != nil {
				t.Error(err)
			}
		}
	}()
	for i := 0; i < 5; i++ {
		r1.ok(`UID STORE %d +FLAGS.SILENT (\Deleted)`, 2*i+1)
		r1.ok("EXPUNGE")
		r2.ok(`UID STORE %d +FLAGS (\Seen)`, 2*i+2)
		r2.ok("NOOP")
	}
	wg.Wait()
	msgs := mailboxtest.Inbox(t, e.store, "bob@example.org")
	var want []string
	for i, m := range msgs {
		want = append(want, fmt.Sprintf("* %d FETCH (UID %d)", i+1, m.UID))
	}
	for _, r := range []*raw{r1, r2} {
		r.ok("NOOP")
		lines := r.ok("FETCH 1:* (UID)")
		if strings.Join(lines, "|") != strings.Join(want, "|") {
			t.Fatalf("view %q\nstore %q", lines, want)
		}
	}
	if len(msgs) != 15 {
		t.Fatalf("%d messages", len(msgs))
	}
}

func TestAppendLimits(t *testing.T) {
	e := startWith(t, Config{Trusted: true}, store.Config{Quota: 300, MaxMessageSize: 200})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	lines, _ := r.cmd("CAPABILITY")
	if !strings.Contains(lines[0], "APPENDLIMIT=200") {
		t.Fatalf("caps %q", lines)
	}
	msg := strings.Repeat("x", 160)
	r.ok("APPEND INBOX {%d+}\r\n%s", len(msg), msg)
	if _, st := r.cmd("APPEND INBOX {%d+}\r\n%s", len(msg), msg); !strings.HasPrefix(st, "NO [OVERQUOTA]") {
		t.Fatalf("over quota: %s", st)
	}
	// A synchronizing literal over APPENDLIMIT is refused before it is sent (RFC 7889).
	if _, st := r.cmd("APPEND INBOX {250}"); !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Fatalf("too big: %s", st)
	}
	if _, st := r.cmd("APPEND Nowhere {1+}\r\nz"); !strings.HasPrefix(st, "NO [TRYCREATE]") {
		t.Fatalf("missing mailbox: %s", st)
	}
	lines = r.ok("STATUS INBOX (MESSAGES SIZE)")
	if !strings.Contains(lines[0], "MESSAGES 1") || !strings.Contains(lines[0], "SIZE 160") {
		t.Fatalf("status %q", lines)
	}
}

// A message another program wrote with bare LF line ends is served with CRLF, and its
// RFC822.SIZE matches what FETCH BODY[] sends.
func TestBareLFServedAsCRLF(t *testing.T) {
	e := start(t, Config{Trusted: true})
	u, err := e.store.Open(context.Background(), "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	var root string
	filepath.Walk(e.store.Config().Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() && filepath.Base(p) == "Maildir" {
			root = p
		}
		return nil
	})
	lf := "Subject: lf\n\nline one\nline two\n"
	if err := os.WriteFile(filepath.Join(root, "new", "1700000000.M1P1Q1.other"), []byte(lf), 0o600); err != nil {
		t.Fatal(err)
	}
	c := login(t, e, "bob@example.org", "pw2", nil)
	c.Select("INBOX", nil).Wait()
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%v %v", msgs, err)
	}
	body := string(msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true}))
	if body != strings.ReplaceAll(lf, "\n", "\r\n") || msgs[0].RFC822Size != int64(len(body)) {
		t.Fatalf("size %d body %q", msgs[0].RFC822Size, body)
	}
}
