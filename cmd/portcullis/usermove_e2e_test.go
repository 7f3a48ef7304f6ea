package main

import (
	"context"
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
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/redistest"
)

// imapMsg is what a move must keep of a message.
type imapMsg struct {
	uid     imap.UID
	subject string
	flags   []string
}

// inboxState returns the UIDVALIDITY and the messages of user's INBOX on a back-end.
func inboxState(t *testing.T, b *backend, user string) (uint32, []imapMsg) {
	t.Helper()
	c := imapTLSFrom(t, b.imaps, "127.0.0.2", user)
	defer c.Close()
	sel, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	if sel.NumMessages == 0 {
		return sel.UIDValidity, nil
	}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	require.NoError(t, err)
	out := make([]imapMsg, len(msgs))
	for i, m := range msgs {
		var flags []string
		for _, f := range m.Flags {
			if f != `\Recent` {
				flags = append(flags, strings.ToLower(string(f)))
			}
		}
		slices.Sort(flags)
		out[i] = imapMsg{uid: m.UID, subject: m.Envelope.Subject, flags: flags}
	}
	return sel.UIDValidity, out
}

// backendUIDLs lists user's POP3 unique-ids on a back-end.
func backendUIDLs(t *testing.T, b *backend, user string) []string {
	t.Helper()
	p := pop3Dial(t, b.pop3s)
	p.cmd("USER "+user, "+OK")
	p.cmd("PASS "+proxyPassword, "+OK")
	p.cmd("UIDL", "+OK")
	var out []string
	for l := range strings.Lines(p.multiline()) {
		if _, uidl, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			out = append(out, uidl)
		}
	}
	p.cmd("QUIT", "+OK")
	return out
}

// sendHeld is sendVia for another goroutine than the test's: errors are returned.
func sendHeld(addr, rcpt, subject string) error {
	conn, err := dialFrom(addr, "127.0.0.2", time.Now().Add(time.Minute))
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	msg := fmt.Sprintf("From: sender@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n", rcpt, subject)
	if _, err := e2eSend(c, "sender@example.net", rcpt, msg); err != nil {
		return err
	}
	return c.Quit()
}

// TestUserMove moves alice from store1 to store2 with portcullis user move while mail
// for her keeps arriving through the front-end and an IMAP client of hers is connected
// to store1: afterwards every message accepted is on store2 exactly once, the messages
// from before keep their UIDs, UIDVALIDITY, flags and POP3 UIDLs, store1's copy is gone,
// and the connected client was told BYE.
func TestUserMove(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	dns := dnstest.New(t, dnstest.Zone{})
	dir := putClusterUsers(t, dsn)
	bs := startBackends(t, dsn, dns, "store1", "store2")
	s1, s2 := bs[0], bs[1]
	fe := startFrontend(t, dsn, redistest.Start(t), dns, s1, s2)
	mx := fe.addrs["mx"]
	const alice = "alice@example.test"

	var sent []string
	for i := range 5 {
		subj := fmt.Sprintf("before %d", i)
		_, err := sendVia(t, mx, alice, subj)
		require.NoError(t, err)
		sent = append(sent, subj)
	}
	defer func() {
		if t.Failed() {
			t.Log(fe.logText())
			t.Log(s1.srv.logText())
			t.Log(s2.srv.logText())
		}
	}()
	requireEventually(t, func() bool { _, m := inboxState(t, s1, alice); return len(m) == 5 })
	c := imapTLSFrom(t, s1.imaps, "127.0.0.2", alice)
	_, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.NoError(t, c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close())
	require.NoError(t, c.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Close())
	validity, before := inboxState(t, s1, alice)
	uidls := backendUIDLs(t, s1, alice)
	require.Len(t, uidls, 5)

	// Mail keeps arriving through the front-end during the whole move.
	stop := make(chan struct{})
	var mu sync.Mutex
	var wg sync.WaitGroup
	var sendErr error
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			subj := fmt.Sprintf("live %d", i)
			if err := sendHeld(mx, alice, subj); err != nil {
				mu.Lock()
				sendErr = fmt.Errorf("%s: %w", subj, err)
				mu.Unlock()
				return
			}
			mu.Lock()
			sent = append(sent, subj)
			mu.Unlock()
		}
	})
	var once sync.Once
	stopSending := func() { once.Do(func() { close(stop); wg.Wait() }) }
	t.Cleanup(stopSending)

	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte(proxyPassword+"\n"), 0o600))
	out, err := runIn(t, "", "user", "--config", s2.cfg, "move", alice, "--to", "store2",
		"--password-file", pwFile, "--insecure-skip-verify")
	require.NoError(t, err, out)
	require.Contains(t, out, "alice@example.test now lives on store2")
	require.Contains(t, out, "removed the old copy on store1")
	time.Sleep(time.Second) // more mail after the flip
	stopSending()
	require.NoError(t, sendErr)

	// The client connected to store1 was closed when the move began.
	require.Error(t, c.Noop().Wait(), "the IMAP session on the old back-end is still open")
	require.True(t, logHas(s1.srv.logText(), "closed the sessions of a user who no longer lives here", "user="+alice))

	// Every message accepted is on store2 exactly once (held ones delivered after the
	// flip), none on store1.
	mu.Lock()
	want := slices.Clone(sent)
	mu.Unlock()
	slices.Sort(want)
	var got []imapMsg
	requireEventually(t, func() bool { _, got = inboxState(t, s2, alice); return len(got) >= len(want) })
	var subjects []string
	for _, m := range got {
		subjects = append(subjects, m.subject)
	}
	slices.Sort(subjects)
	require.Equal(t, want, subjects, "store2 does not hold each message exactly once")
	_, left := inboxState(t, s1, alice)
	require.Empty(t, left, "the old copy is still on store1")

	// The messages from before keep their UIDs, UIDVALIDITY, flags and POP3 UIDLs.
	v2, after := inboxState(t, s2, alice)
	require.Equal(t, validity, v2)
	require.Equal(t, before, after[:5])
	require.Equal(t, uidls, backendUIDLs(t, s2, alice)[:5])
	require.Contains(t, before[2].flags, "$work")

	// A move stopped while the user is moving (here during --settle) leaves the mail
	// held; the same command run again finishes it, nothing copied twice.
	const carol = "carol@example.test"
	for i := range 3 {
		_, err := sendVia(t, mx, carol, fmt.Sprintf("carol %d", i))
		require.NoError(t, err)
	}
	requireEventually(t, func() bool { _, m := inboxState(t, s1, carol); return len(m) == 3 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"user", "--config", s2.cfg, "move", carol, "--to", "store2", "--password-file", pwFile,
			"--insecure-skip-verify", "--settle", "1m"})
		done <- root.ExecuteContext(ctx)
	}()
	requireEventually(t, func() bool {
		u, err := dir.Lookup(context.Background(), carol)
		return err == nil && u.State == directory.StateMoving
	})
	cancel()
	require.ErrorContains(t, <-done, "run it again")
	_, err = sendVia(t, mx, carol, "carol held")
	require.NoError(t, err)
	out, err = runIn(t, "", "user", "--config", s2.cfg, "move", carol, "--to", "store2", "--password-file", pwFile, "--insecure-skip-verify")
	require.NoError(t, err, out)
	requireEventually(t, func() bool { _, m := inboxState(t, s2, carol); return len(m) == 4 })
	_, cm := inboxState(t, s2, carol)
	var cs []string
	for _, m := range cm {
		cs = append(cs, m.subject)
	}
	slices.Sort(cs) // delivered concurrently: in any order
	require.Equal(t, []string{"carol 0", "carol 1", "carol 2", "carol held"}, cs)

	// Through the directory the user is on store2, no longer moving.
	out, err = runIn(t, "", "user", "--config", s2.cfg, "show", alice)
	require.NoError(t, err)
	require.Contains(t, out, "mail host: store2")
	require.Contains(t, out, "state:     -")
}
