package imapd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/pop3d"
)

// Two IMAP sessions, a POP3 session and delivery on one mailbox at once: at the end every
// view agrees with the store on UIDs and flags, and POP3's deletions reached IMAP as
// EXPUNGE.
func TestIMAPPOP3DeliveryTogether(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for i := 0; i < 6; i++ {
		e.deliver(t, "bob@example.org", fmt.Sprintf("Subject: old %d\r\n\r\nx\r\n", i))
	}
	psrv, err := pop3d.New(pop3d.Config{Trusted: true}, e.store, mailboxtest.Auth{"bob@example.org": "pw2"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pln, _ := net.Listen("tcp", "127.0.0.1:0")
	go psrv.Serve(pln)
	defer psrv.Close()

	r1, r2 := dialRaw(t, e.addr), dialRaw(t, e.addr)
	for _, r := range []*raw{r1, r2} {
		r.ok("LOGIN bob@example.org pw2")
		r.ok("SELECT INBOX")
	}
	// POP3 logs in and sees the 6 old messages.
	pc, err := net.Dial("tcp", pln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(30 * time.Second))
	pr := textproto.NewReader(bufio.NewReader(pc))
	pop := func(cmd, want string) {
		t.Helper()
		if cmd != "" {
			fmt.Fprintf(pc, "%s\r\n", cmd)
		}
		l, err := pr.ReadLine()
		if err != nil || !strings.HasPrefix(l, want) {
			t.Fatalf("POP3 %q: %q %v", cmd, l, err)
		}
	}
	pop("", "+OK")
	pop("USER bob@example.org", "+OK")
	pop("PASS pw2", "+OK maildrop has 6")

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // delivery
		defer wg.Done()
		for i := 0; i < 8; i++ {
			if _, err := e.store.Deliver(context.Background(), "bob@example.org", "", strings.NewReader(fmt.Sprintf("Subject: new %d\r\n\r\ny\r\n", i)), nil); err != nil {
				t.Error(err)
			}
		}
	}()
	// IMAP 1 flags, IMAP 2 expunges one old message, POP3 deletes two others.
	r1.ok(`UID STORE 1:3 +FLAGS (\Flagged)`)
	r2.ok(`UID STORE 6 +FLAGS.SILENT (\Deleted)`)
	r2.ok("UID EXPUNGE 6")
	pop("DELE 2", "+OK")
	pop("DELE 4", "+OK")
	pop("RETR 6", "-ERR") // expunged by IMAP meanwhile
	pop("RETR 1", "+OK")
	if _, err := pr.ReadDotBytes(); err != nil {
		t.Fatal(err)
	}
	pop("QUIT", "+OK")
	wg.Wait()

	msgs := mailboxtest.Inbox(t, e.store, "bob@example.org")
	if len(msgs) != 6-3+8 {
		t.Fatalf("%d messages in the store", len(msgs))
	}
	var want []string
	for i, m := range msgs {
		want = append(want, fmt.Sprintf("* %d FETCH (UID %d FLAGS (%s))", i+1, m.UID, strings.Join(m.Flags, " ")))
	}
	for _, r := range []*raw{r1, r2} {
		r.ok("NOOP")
		lines := r.ok("FETCH 1:* (UID FLAGS)")
		for i, l := range lines { // \Recent is the session's, not the store's
			l = strings.ReplaceAll(l, ` \Recent`, "")
			l = strings.ReplaceAll(l, `\Recent `, "")
			lines[i] = strings.ReplaceAll(l, `\Recent`, "")
		}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Fatalf("session view:\n%s\nstore:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
	}
	if !strings.Contains(want[0], `\Flagged \Seen`) { // UID 1: flagged by IMAP, retrieved by POP3
		t.Fatalf("uid 1 flags: %s", want[0])
	}
}

func TestJunkTraining(t *testing.T) {
	type trained struct {
		user, subject string
		spam          bool
	}
	got := make(chan trained, 10)
	train := func(_ context.Context, user string, r io.Reader, spam bool) error {
		b, _ := io.ReadAll(r)
		subj := strings.SplitN(strings.TrimPrefix(string(b), "Subject: "), "\r\n", 2)[0]
		got <- trained{user, subj, spam}
		return nil
	}
	e := start(t, Config{Trusted: true, Train: train})
	e.deliver(t, "alice@example.org", "Subject: cheap pills\r\n\r\nbuy\r\n")
	e.deliver(t, "alice@example.org", "Subject: meeting\r\n\r\nat 10\r\n")
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	r.ok("MOVE 1 Junk")
	r.ok("COPY 1 Trash") // not training
	r.ok("SELECT Junk")
	r.ok("MOVE 1 INBOX") // a false positive: ham
	want := []trained{{"alice@example.org", "cheap pills", true}, {"alice@example.org", "cheap pills", false}}
	for _, w := range want {
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("trained %+v, want %+v", g, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no training call for %+v", w)
		}
	}
	select {
	case g := <-got:
		t.Fatalf("unexpected training %+v", g)
	case <-time.After(200 * time.Millisecond):
	}
}
