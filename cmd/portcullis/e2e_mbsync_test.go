package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// syncedMsg is one message as both sides of a sync must hold it: its Message-ID, its
// text with LF line ends (mbsync stores the maildir side so) and its flags in maildir
// letters, sorted.
type syncedMsg struct {
	id, text, flags string
}

// imapToMaildir maps the system flags mbsync 1.4 syncs to maildir letters (the maildir
// spec's D, F, R, S, T); keywords stay on the server.
var imapToMaildir = map[imap.Flag]byte{imap.FlagDraft: 'D', imap.FlagFlagged: 'F', imap.FlagAnswered: 'R',
	imap.FlagSeen: 'S', imap.FlagDeleted: 'T'}

// messageID returns the Message-ID field of a message text.
func messageID(text string) string {
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l == "\r" {
			break
		}
		if strings.HasPrefix(strings.ToLower(l), "message-id:") {
			return strings.TrimSpace(l[len("message-id:"):])
		}
	}
	return ""
}

// normalize drops CRs and the X-TUID field mbsync adds to what it uploads (to find it
// again when a server does not say APPENDUID).
func normalize(text string) string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	var out []string
	for _, l := range strings.SplitAfter(text, "\n") {
		if !strings.HasPrefix(l, "X-TUID: ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// serverFolder returns a folder's messages as the server holds them, by Message-ID.
func serverFolder(t *testing.T, c *imapclient.Client, folder string) []syncedMsg {
	t.Helper()
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err, "SELECT %s", folder)
	if sel.NumMessages == 0 {
		return nil
	}
	body := &imap.FetchItemBodySection{Peek: true}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	bufs, err := c.Fetch(all, &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	require.NoError(t, err)
	var out []syncedMsg
	for _, b := range bufs {
		var fl []byte
		for _, f := range b.Flags {
			if l, ok := imapToMaildir[f]; ok {
				fl = append(fl, l)
			}
		}
		slices.Sort(fl)
		text := normalize(string(b.FindBodySection(body)))
		out = append(out, syncedMsg{id: messageID(text), text: text, flags: string(fl)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// localFolder returns a maildir folder's messages: the files of new/ and cur/, flags from
// the ":2," suffix.
func localFolder(t *testing.T, dir string) []syncedMsg {
	t.Helper()
	var out []syncedMsg
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		require.NoError(t, err)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			require.NoError(t, err)
			fl := ""
			if _, info, ok := strings.Cut(e.Name(), ":2,"); ok {
				f := []byte(info)
				slices.Sort(f)
				fl = string(f)
			}
			text := normalize(string(b))
			out = append(out, syncedMsg{id: messageID(text), text: text, flags: fl})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// localFile returns the path of the local message with the Message-ID id in a maildir.
func localFile(t *testing.T, dir, id string) string {
	t.Helper()
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			p := filepath.Join(dir, sub, e.Name())
			if b, _ := os.ReadFile(p); messageID(string(b)) == id {
				return p
			}
		}
	}
	t.Fatalf("no local message %s in %s", id, dir)
	return ""
}

// uidOf returns the UID of the message with the Message-ID id in the selected folder.
func uidOf(t *testing.T, c *imapclient.Client, id string) imap.UID {
	t.Helper()
	data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: id}}}, nil).Wait()
	require.NoError(t, err)
	uids := data.AllUIDs()
	require.Len(t, uids, 1, "server message %s", id)
	return uids[0]
}

// pop3UIDLs logs in over POP3 (a trusted listener) and returns the UIDL of each message
// by its Message-ID (read with TOP n 0).
func pop3UIDLs(t *testing.T, addr, user, pass string) map[string]string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := textproto.NewReader(bufio.NewReader(conn))
	cmd := func(line string) string {
		t.Helper()
		if line != "" {
			fmt.Fprintf(conn, "%s\r\n", line)
		}
		l, err := r.ReadLine()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(l, "+OK"), "%s: %s", line, l)
		return l
	}
	cmd("")
	cmd("USER " + user)
	cmd("PASS " + pass)
	cmd("UIDL")
	lines, err := r.ReadDotLines()
	require.NoError(t, err)
	out := map[string]string{}
	for _, l := range lines {
		n, uidl, _ := strings.Cut(l, " ")
		cmd("TOP " + n + " 0")
		hdr, err := r.ReadDotLines()
		require.NoError(t, err)
		out[messageID(strings.Join(hdr, "\n"))] = uidl
	}
	cmd("QUIT")
	return out
}

func syncMsg(id, subject string) []byte {
	return fmt.Appendf(nil, "From: someone@example.net\r\nTo: postmaster@example.test\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n%s body\r\nline two\r\n", subject, id, subject)
}

// TestE2EMbsyncBothWays: mbsync (isync 1.4) against the binary, with CONDSTORE and
// QRESYNC announced, syncs a maildir from the server, then flag changes, deletions and
// new messages on both sides, in INBOX and another folder, and folders created on both
// sides (one a subfolder); after the second sync both
// sides hold the same messages (contents and flags), each once, and a third sync changes
// nothing. POP3 UIDLs stay the same through the flag changes and a SIGKILL and restart.
// About 10 s at load 29 (three mbsync runs, two 1.1 s waits, two starts), plus the
// race-built binary the package's end-to-end tests share.
func TestE2EMbsyncBothWays(t *testing.T) {
	mbsync := testenv.Program(t, "mbsync")
	dir := t.TempDir()
	cfg := attackConfig(t, dir, "", ", trusted: true")
	srv := startServer(t, cfg, "imap", "pop3")
	defer srv.kill()
	pass := postmasterPassword(t, srv)
	const user = "postmaster@example.test"
	c := imapLogin(t, srv.addrs["imap"], user, pass, true)
	defer c.Close()
	caps, err := c.Capability().Wait()
	require.NoError(t, err)
	require.True(t, caps.Has("CONDSTORE") && caps.Has("QRESYNC"), "CAPABILITY %v", caps)
	require.NoError(t, c.Create("Work", nil).Wait())
	date := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for i, fl := range [][]imap.Flag{nil, {imap.FlagSeen}, {imap.FlagFlagged}, {imap.FlagSeen, imap.FlagAnswered}, nil} {
		imapAppend(t, c, "INBOX", syncMsg(fmt.Sprintf("<in%d@x>", i), fmt.Sprintf("inbox %d", i)), fl, date)
	}
	for i, fl := range [][]imap.Flag{{imap.FlagSeen}, {imap.FlagDraft}, nil} {
		imapAppend(t, c, "Work", syncMsg(fmt.Sprintf("<work%d@x>", i), fmt.Sprintf("work %d", i)), fl, date)
	}
	// 8-bit text and a message of 300 KB.
	imapAppend(t, c, "INBOX", append(syncMsg("<in5@x>", "8bit"), "r\xc3\xa9sum\xc3\xa9 \xe2\x82\xac\r\n"...), nil, date)
	imapAppend(t, c, "Work", append(syncMsg("<work3@x>", "big"), strings.Repeat("a long line of the big message\r\n", 10000)...), nil, date)

	local := filepath.Join(dir, "local")
	require.NoError(t, os.MkdirAll(local, 0o700))
	host, port, _ := net.SplitHostPort(srv.addrs["imap"])
	rc := filepath.Join(dir, "mbsyncrc")
	require.NoError(t, os.WriteFile(rc, fmt.Appendf(nil, `IMAPAccount portcullis
Host %s
Port %s
User %s
Pass "%s"
SSLType STARTTLS
CertificateFile %s
AuthMechs LOGIN
Timeout 20

IMAPStore remote
Account portcullis

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Work Work/* Projects Server
CopyArrivalDate yes
Create Both
Expunge Both
SyncState *
Sync All
`, host, port, user, pass, filepath.Join(dir, "data/tls/selfsigned.crt"), local, local), 0o600))
	run := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, mbsync, "-c", rc, "-a", "-V")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "mbsync:\n%s", out)
		return string(out)
	}
	inbox, work := filepath.Join(local, "INBOX"), filepath.Join(local, "Work")
	// equal checks that both sides hold want's Message-IDs, each once, with the same
	// text and flags.
	equal := func(when string, want map[string][]string) {
		t.Helper()
		for folder, ids := range want {
			ldir := filepath.Join(local, folder)
			srvMsgs, locMsgs := serverFolder(t, c, folder), localFolder(t, ldir)
			var got []string
			for _, m := range srvMsgs {
				got = append(got, m.id)
			}
			slices.Sort(ids)
			require.Equal(t, ids, got, "%s: server %s", when, folder)
			require.Len(t, locMsgs, len(srvMsgs), "%s: local %s", when, folder)
			for i := range srvMsgs {
				require.Equal(t, srvMsgs[i].id, locMsgs[i].id, "%s: %s", when, folder)
				require.Equal(t, srvMsgs[i].text, locMsgs[i].text, "%s: text of %s in %s", when, srvMsgs[i].id, folder)
				require.Equal(t, srvMsgs[i].flags, locMsgs[i].flags, "%s: flags of %s in %s", when, srvMsgs[i].id, folder)
			}
		}
	}

	run()
	want := map[string][]string{"INBOX": {"<in0@x>", "<in1@x>", "<in2@x>", "<in3@x>", "<in4@x>", "<in5@x>"},
		"Work": {"<work0@x>", "<work1@x>", "<work2@x>", "<work3@x>"}}
	equal("first sync", want)
	// CopyArrivalDate: the local files carry the server's INTERNALDATE as their mtime.
	for _, id := range []string{"<in0@x>", "<in5@x>"} {
		fi, err := os.Stat(localFile(t, inbox, id))
		require.NoError(t, err)
		require.True(t, fi.ModTime().Equal(date), "mtime of %s: %v, want %v", id, fi.ModTime(), date)
	}
	uidls := pop3UIDLs(t, srv.addrs["pop3"], user, pass)
	require.Len(t, uidls, 6)

	// Server side: flag and read in0, unflag in2 and read it, expunge in1, a new message in each
	// folder, work0 marked unread.
	_, err = c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	store := func(id string, op imap.StoreFlagsOp, flags ...imap.Flag) {
		t.Helper()
		require.NoError(t, c.Store(imap.UIDSetNum(uidOf(t, c, id)), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close())
	}
	store("<in0@x>", imap.StoreFlagsAdd, imap.FlagFlagged, imap.FlagSeen)
	store("<in2@x>", imap.StoreFlagsSet, imap.FlagSeen)
	store("<in1@x>", imap.StoreFlagsAdd, imap.FlagDeleted)
	require.NoError(t, c.Expunge().Close())
	imapAppend(t, c, "INBOX", syncMsg("<srvnew@x>", "server new"), []imap.Flag{imap.FlagSeen}, date)
	_, err = c.Select("Work", nil).Wait()
	require.NoError(t, err)
	store("<work0@x>", imap.StoreFlagsDel, imap.FlagSeen)
	imapAppend(t, c, "Work", syncMsg("<srvwork@x>", "server work"), nil, date)

	// Local side: in3 replied, flagged and read, in4 deleted (its file removed), work1 trashed
	// (T, expunged by Expunge Both), a new message in each folder, one of them read.
	p := localFile(t, inbox, "<in3@x>")
	base, _, _ := strings.Cut(filepath.Base(p), ":2,")
	require.NoError(t, os.Rename(p, filepath.Join(inbox, "cur", base+":2,FRS")))
	// in0 answered here while the server flagged and read it: both changes must meet.
	p = localFile(t, inbox, "<in0@x>")
	base, _, _ = strings.Cut(filepath.Base(p), ":2,")
	require.NoError(t, os.Rename(p, filepath.Join(inbox, "cur", base+":2,R")))
	require.NoError(t, os.Remove(localFile(t, inbox, "<in4@x>")))
	p = localFile(t, work, "<work1@x>")
	base, info, _ := strings.Cut(filepath.Base(p), ":2,")
	require.NoError(t, os.Rename(p, filepath.Join(work, "cur", base+":2,"+info+"T")))
	writeLocal := func(dir, name, flags string, msg []byte) {
		sub := "new"
		if flags != "" {
			sub, name = "cur", name+":2,"+flags
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, sub, name), []byte(strings.ReplaceAll(string(msg), "\r\n", "\n")), 0o600))
	}
	writeLocal(inbox, fmt.Sprintf("%d.local1.host", time.Now().Unix()), "", syncMsg("<locnew@x>", "local new"))
	localDate := time.Date(2026, 11, 20, 8, 30, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(localFile(t, inbox, "<locnew@x>"), localDate, localDate))
	writeLocal(work, fmt.Sprintf("%d.local2.host", time.Now().Unix()), "S", syncMsg("<locwork@x>", "local work"))
	// Folders created on either side (Create Both): a local one and a local subfolder
	// of Work, each with a message, and one on the server.
	for i, f := range []string{"Projects", "Work/Sub"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			require.NoError(t, os.MkdirAll(filepath.Join(local, f, sub), 0o700))
		}
		writeLocal(filepath.Join(local, f), fmt.Sprintf("%d.folder%d.host", time.Now().Unix(), i), "S", syncMsg(fmt.Sprintf("<folder%d@x>", i), f))
	}
	require.NoError(t, c.Create("Server", nil).Wait())
	imapAppend(t, c, "Server", syncMsg("<server0@x>", "server folder"), []imap.Flag{imap.FlagFlagged}, date)
	time.Sleep(1100 * time.Millisecond) // mbsync compares maildir mtimes at 1 s resolution

	run()
	want = map[string][]string{"INBOX": {"<in0@x>", "<in2@x>", "<in3@x>", "<in5@x>", "<srvnew@x>", "<locnew@x>"},
		"Work":     {"<work0@x>", "<work2@x>", "<work3@x>", "<srvwork@x>", "<locwork@x>"},
		"Projects": {"<folder0@x>"}, "Work/Sub": {"<folder1@x>"}, "Server": {"<server0@x>"}}
	equal("second sync", want)
	// The message written here reached the server with its file's date (APPEND's
	// date-time, RFC 3501 §6.3.11).
	_, err = c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err)
	bufs, err := c.Fetch(imap.UIDSetNum(uidOf(t, c, "<locnew@x>")), &imap.FetchOptions{InternalDate: true}).Collect()
	require.NoError(t, err)
	require.Len(t, bufs, 1)
	require.True(t, bufs[0].InternalDate.Equal(localDate), "INTERNALDATE %v, want %v", bufs[0].InternalDate, localDate)
	// The changes landed where they were made and where they were sent.
	flagsOf := func(folder, id string) string {
		for _, m := range serverFolder(t, c, folder) {
			if m.id == id {
				return m.flags
			}
		}
		return "missing"
	}
	require.Equal(t, "FRS", flagsOf("INBOX", "<in0@x>"))
	require.Equal(t, "S", flagsOf("INBOX", "<in2@x>"))
	require.Equal(t, "FRS", flagsOf("INBOX", "<in3@x>"))
	require.Equal(t, "S", flagsOf("Work", "<locwork@x>"))
	require.Equal(t, "", flagsOf("Work", "<work0@x>"))

	// POP3 UIDLs did not change with the flags (RFC 1939 §7), IMAP's or mbsync's.
	after := pop3UIDLs(t, srv.addrs["pop3"], user, pass)
	for _, id := range []string{"<in0@x>", "<in2@x>", "<in3@x>"} {
		require.Equal(t, uidls[id], after[id], "UIDL of %s after flag changes", id)
	}

	// A third sync has nothing to do and duplicates nothing.
	time.Sleep(1100 * time.Millisecond)
	run()
	equal("third sync", want)

	// Killed and started again: the same UIDLs.
	c.Close()
	srv.kill()
	srv = startServer(t, cfg, "imap", "pop3")
	require.Equal(t, after, pop3UIDLs(t, srv.addrs["pop3"], user, pass), "UIDLs after a restart")
}
