package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// folderSubjects lists the subjects in a folder of c's user, sorted.
func folderSubjects(t *testing.T, c *imapclient.Client, folder string) []string {
	t.Helper()
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err)
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(all, &imap.FetchOptions{Envelope: true}).Collect()
	require.NoError(t, err)
	var out []string
	for _, m := range msgs {
		out = append(out, m.Envelope.Subject)
	}
	slices.Sort(out)
	return out
}

// TestUserMoveExpunged: messages alice expunges on the old back-end after the move's
// first copy and before she is marked moving (in INBOX and in another folder) are not
// brought back to the new back-end by the catch-up copy, and the move's verification
// (as many messages on each side) passes.
func TestUserMoveExpunged(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	dns := dnstest.New(t, dnstest.Zone{})
	putClusterUsers(t, dsn)
	secret := filepath.Join(t.TempDir(), "master.secret")
	require.NoError(t, os.WriteFile(secret, []byte("move-master-secret-0123456789abcdef\n"), 0o600))
	bs := startBackendsWith(t, dsn, dns, secret, "store1", "store2")
	s1, s2 := bs[0], bs[1]
	defer func() {
		if t.Failed() {
			t.Log(s1.srv.logText())
			t.Log(s2.srv.logText())
		}
	}()
	const alice = "alice@example.test"

	c := imapTLSFrom(t, s1.imaps, "127.0.0.2", alice)
	require.NoError(t, c.Create("Archive", nil).Wait())
	appendMsg := func(folder, subject string) {
		msg := fmt.Sprintf("From: sender@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n", alice, subject)
		cmd := c.Append(folder, int64(len(msg)), nil)
		_, err := cmd.Write([]byte(msg))
		require.NoError(t, err)
		require.NoError(t, cmd.Close())
		_, err = cmd.Wait()
		require.NoError(t, err)
	}
	for i := range 4 {
		appendMsg("INBOX", fmt.Sprintf("inbox %d", i))
	}
	appendMsg("Archive", "archive 0")
	appendMsg("Archive", "archive 1")
	require.NoError(t, c.Logout().Wait())

	// Between the first copy and the marking, alice deletes "inbox 1" and "archive 0" in
	// a session of her own (store1 closes it once she is moving; it has ended by then).
	var hookErr error
	expunge := func(folder string, seq uint32) error {
		c := imapTLSFrom(t, s1.imaps, "127.0.0.2", alice)
		defer c.Logout()
		if _, err := c.Select(folder, nil).Wait(); err != nil {
			return err
		}
		if err := c.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return err
		}
		return c.Expunge().Close()
	}
	moveFirstCopied = func(string) {
		hookErr = expunge("INBOX", 2)
		if hookErr == nil {
			hookErr = expunge("Archive", 1)
		}
	}
	t.Cleanup(func() { moveFirstCopied = nil })

	out, err := runIn(t, "", "user", "--config", s2.cfg, "move", alice, "--to", "store2",
		"--master", "proxy", "--password-file", secret, "--insecure-skip-verify")
	require.NoError(t, hookErr)
	require.NoError(t, err, out)
	require.Contains(t, out, "alice@example.test now lives on store2 (4 messages in ")

	c2 := imapTLSFrom(t, s2.imaps, "127.0.0.2", alice)
	require.Equal(t, []string{"inbox 0", "inbox 2", "inbox 3"}, folderSubjects(t, c2, "INBOX"), "an expunged message came back")
	require.Equal(t, []string{"archive 1"}, folderSubjects(t, c2, "Archive"), "an expunged message came back")
	require.Zero(t, filesOn(t, s1, alice), "the old copy is still on store1")
}
