package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
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
	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/store"
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

// sieveSession is a ManageSieve client of user on a back-end, from 127.0.0.2 (a direct
// client: not from the back-ends' proxy_from), logged in after STARTTLS.
type sieveSession struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func sieveLogin(t *testing.T, b *backend, user string) *sieveSession {
	t.Helper()
	conn, err := dialFrom(b.sieve, "127.0.0.2", time.Now().Add(time.Minute))
	require.NoError(t, err)
	s := &sieveSession{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { s.conn.Close() })
	s.response()
	require.Equal(t, "OK", s.cmd("STARTTLS"))
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	s.conn, s.r = tc, bufio.NewReader(tc)
	s.response()
	require.Equal(t, "OK", s.cmd(`AUTHENTICATE "PLAIN" "`+plainB64(user, proxyPassword)+`"`))
	return s
}

// response reads lines up to the status line (OK, NO or BYE) and returns that line.
func (s *sieveSession) response() string {
	s.t.Helper()
	for {
		l, err := s.r.ReadString('\n')
		require.NoError(s.t, err)
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
			return l
		}
	}
}

func (s *sieveSession) cmd(line string) string {
	s.t.Helper()
	_, err := fmt.Fprintf(s.conn, "%s\r\n", line)
	require.NoError(s.t, err)
	return s.response()
}

// backendScripts lists user's Sieve scripts on a back-end (its ManageSieve listener,
// from 127.0.0.2), sorted by name.
func backendScripts(t *testing.T, b *backend, user string) []migrate.Script {
	t.Helper()
	got, err := migrate.ScriptsFromManageSieve(context.Background(), migrate.ImapConfig{Addr: b.sieve, Security: "starttls",
		TLSConfig: &tls.Config{InsecureSkipVerify: true}, User: user, Password: proxyPassword,
		Dial: func(_ context.Context, addr string) (net.Conn, error) {
			return dialFrom(addr, "127.0.0.2", time.Time{})
		}})
	require.NoError(t, err)
	slices.SortFunc(got, func(a, b migrate.Script) int { return strings.Compare(a.Name, b.Name) })
	return got
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
// for her keeps arriving through the front-end and an IMAP, a POP3 and a ManageSieve
// client of hers are connected to store1: afterwards every message accepted is on
// store2 exactly once, the messages from before keep their UIDs, UIDVALIDITY, flags and
// POP3 UIDLs, her two Sieve scripts are on store2 with the same one active, store1's
// copy (mail and scripts) is gone, and the connected clients were closed with their
// protocol's temporary error. The move logs in to store1 with the proxy's master login,
// which store1 takes only from its proxy_from with a PROXY header.
func TestUserMove(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	dns := dnstest.New(t, dnstest.Zone{})
	dir := putClusterUsers(t, dsn)
	secret := filepath.Join(t.TempDir(), "master.secret")
	require.NoError(t, os.WriteFile(secret, []byte("move-master-secret-0123456789abcdef\n"), 0o600))
	bs := startBackendsWith(t, dsn, dns, secret, "store1", "store2")
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

	// Two Sieve scripts, one active, and a ManageSieve and a POP3 session left open.
	const filter = "require \"fileinto\";\r\nif header :contains \"subject\" \"[list]\" { fileinto \"Lists\"; }\r\n"
	const vacation = "require \"vacation\";\r\nvacation :days 3 \"away\";\r\n"
	ms := sieveLogin(t, s1, alice)
	require.Equal(t, "OK", ms.cmd(fmt.Sprintf("PUTSCRIPT \"filter\" {%d+}\r\n%s", len(filter), filter)))
	require.Equal(t, "OK", ms.cmd(fmt.Sprintf("PUTSCRIPT \"vacation\" {%d+}\r\n%s", len(vacation), vacation)))
	require.Equal(t, "OK", ms.cmd(`SETACTIVE "filter"`))
	pop := pop3Dial(t, s1.pop3s)
	pop.cmd("USER "+alice, "+OK")
	pop.cmd("PASS "+proxyPassword, "+OK")
	pop.cmd("DELE 1", "+OK") // never committed: the session is closed, not QUIT

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
	// The POP3 session holds alice's maildrop, so the first copy's UIDL read fails
	// until it is closed: --settle leaves the old back-end time for that on a loaded
	// machine.
	out, err := runIn(t, "", "user", "--config", s2.cfg, "move", alice, "--to", "store2",
		"--master", "proxy", "--password-file", secret, "--insecure-skip-verify", "--settle", "4s")
	require.NoError(t, err, out)
	require.Contains(t, out, "alice@example.test now lives on store2")
	require.Contains(t, out, "removed the old copy on store1")
	require.Contains(t, out, "removed the Sieve scripts on store1 (2)")
	time.Sleep(time.Second) // more mail after the flip
	stopSending()
	require.NoError(t, sendErr)

	// The clients connected to store1 were closed when the move began, each with its
	// protocol's temporary failure (RFC 5530, RFC 3206, RFC 5804).
	require.Error(t, c.Noop().Wait(), "the IMAP session on the old back-end is still open")
	require.True(t, logHas(s1.srv.logText(), "closed the sessions of a user who no longer lives here", "user="+alice))
	pop.c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := pop.r.ReadString('\n')
	require.NoError(t, err, "the POP3 session on the old back-end was not told")
	require.True(t, strings.HasPrefix(line, "-ERR [SYS/TEMP] "), line)
	ms.conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err = ms.r.ReadString('\n')
	require.NoError(t, err, "the ManageSieve session on the old back-end was not told")
	require.True(t, strings.HasPrefix(line, "BYE (TRYLATER) "), line)

	// The Sieve scripts are on store2, the same one active, and none on store1.
	require.Equal(t, []migrate.Script{{Name: "filter", Text: []byte(filter), Active: true},
		{Name: "vacation", Text: []byte(vacation)}}, backendScripts(t, s2, alice))
	require.Empty(t, backendScripts(t, s1, alice), "the Sieve scripts are still on store1")

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

	// A script on store1 that store2 cannot compile (written behind ManageSieve's back)
	// stops carol's move before she is marked moving: her mail is never held for it.
	sc, err := store.OpenScripts(context.Background(), store.Config{Dir: filepath.Join(filepath.Dir(s1.cfg), "data", "mail")}, carol)
	require.NoError(t, err)
	require.NoError(t, sc.Put(context.Background(), "broken", []byte("if true { keep\r\n"), store.ScriptLimits{}))
	out, err = runIn(t, "", "user", "--config", s2.cfg, "move", carol, "--to", "store2", "--password-file", pwFile,
		"--proxy-protocol", "--insecure-skip-verify")
	require.ErrorContains(t, err, "cannot be stored here", out)
	require.ErrorContains(t, err, "not moving yet", out)
	cu, err := dir.Lookup(context.Background(), carol)
	require.NoError(t, err)
	require.Equal(t, "", cu.State)
	require.NoError(t, sc.Delete(context.Background(), "broken"))
	require.NoError(t, sc.Close())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"user", "--config", s2.cfg, "move", carol, "--to", "store2", "--password-file", pwFile,
			"--proxy-protocol", "--insecure-skip-verify", "--settle", "1m"})
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
	// Carol's own password over a connection with a PROXY header (this test's process is
	// on 127.0.0.1, in store1's proxy_from).
	out, err = runIn(t, "", "user", "--config", s2.cfg, "move", carol, "--to", "store2", "--password-file", pwFile,
		"--proxy-protocol", "--insecure-skip-verify")
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
