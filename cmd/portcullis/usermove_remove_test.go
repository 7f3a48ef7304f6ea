package main

import (
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/imapd"
	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/store"
)

// TestUserMoveRemoveOnlyVerified: the removal of the old copy takes only the messages
// and folders the move saw before its final copy (and so verified as copied); a
// message that reached the old back-end afterwards (an APPEND, a delivery whose
// directory cache was late) and the folder holding it stay, and the move says so,
// instead of expunging 1:* and losing them.
func TestUserMoveRemoveOnlyVerified(t *testing.T) {
	st := mailboxtest.Store(t, store.Config{})
	tc, _ := mailboxtest.Cert(t)
	srv, err := imapd.New(imapd.Config{TLSConfig: tc}, st, mailboxtest.Users, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	addr := mailboxtest.ServeTLS(t, srv, tc)
	dial := func() *imapclient.Client {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		require.NoError(t, err)
		c := imapclient.New(conn, nil)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.Login("alice@example.org", "secret pw").Wait())
		return c
	}
	c := dial()
	add := func(folder, subject string) {
		msg := "Subject: " + subject + "\r\n\r\nbody\r\n"
		cmd := c.Append(folder, int64(len(msg)), nil)
		_, err := cmd.Write([]byte(msg))
		require.NoError(t, err)
		require.NoError(t, cmd.Close())
		_, err = cmd.Wait()
		require.NoError(t, err)
	}
	for _, f := range []string{"Work", "Work/Old", "Archive"} {
		require.NoError(t, c.Create(f, nil).Wait())
	}
	add("INBOX", "one")
	add("INBOX", "two")
	add("Work", "w1")
	add("Work/Old", "o1")
	add("Archive", "a1")

	rm := dial()
	snap, err := snapshotMailbox(rm)
	require.NoError(t, err)
	// After the snapshot (and so after the verification): new mail in INBOX and Work.
	add("INBOX", "late")
	add("Work", "late w")

	n, err := removeMailbox(rm, snap)
	require.Error(t, err)
	require.ErrorContains(t, err, "INBOX: 1 messages arrived after the copy")
	require.ErrorContains(t, err, "Work: 1 messages arrived after the copy")
	require.Equal(t, 5, n)

	count := func(folder string) int {
		s, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
		require.NoError(t, err)
		return int(*s.NumMessages)
	}
	require.Equal(t, 1, count("INBOX"))
	require.Equal(t, 1, count("Work"))
	list, err := c.List("", "*", nil).Collect()
	require.NoError(t, err)
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	got := strings.Join(names, ",")
	require.NotContains(t, got, "Archive")
	require.NotContains(t, got, "Old")
	require.Contains(t, got, "Work")

	// Nothing arrived late: everything goes, no error.
	rm = dial()
	snap, err = snapshotMailbox(rm)
	require.NoError(t, err)
	n, err = removeMailbox(rm, snap)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, 0, count("INBOX"))
}
