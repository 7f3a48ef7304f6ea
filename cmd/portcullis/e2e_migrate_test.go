package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/migratetest"
)

// mailboxSnapshot is what a user sees over IMAP: folders with their special use,
// subscriptions, and per folder the sorted list of "sha256 size flags internaldate" of
// its messages.
type mailboxSnapshot struct {
	Folders []string
	Subs    []string
	Msgs    map[string][]string
}

func imapSnapshot(t *testing.T, c *imapclient.Client) mailboxSnapshot {
	t.Helper()
	list, err := c.List("", "*", &imap.ListOptions{ReturnSubscribed: true, ReturnSpecialUse: true}).Collect()
	require.NoError(t, err)
	s := mailboxSnapshot{Msgs: map[string][]string{}}
	for _, l := range list {
		use := ""
		for _, a := range l.Attrs {
			switch a {
			case imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrJunk, imap.MailboxAttrTrash, imap.MailboxAttrArchive:
				use = string(a)
			case imap.MailboxAttrSubscribed:
				s.Subs = append(s.Subs, l.Mailbox)
			}
		}
		s.Folders = append(s.Folders, l.Mailbox+" "+use)
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
			continue
		}
		sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		require.NoError(t, err, l.Mailbox)
		var msgs []string
		if sel.NumMessages > 0 {
			cmd := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, InternalDate: true,
				RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
			for {
				md := cmd.Next()
				if md == nil {
					break
				}
				var flags []string
				var size int64
				var date time.Time
				h := sha256.New()
				for {
					it := md.Next()
					if it == nil {
						break
					}
					switch it := it.(type) {
					case imapclient.FetchItemDataFlags:
						for _, f := range it.Flags {
							if !strings.EqualFold(string(f), `\Recent`) {
								flags = append(flags, string(f))
							}
						}
					case imapclient.FetchItemDataRFC822Size:
						size = it.Size
					case imapclient.FetchItemDataInternalDate:
						date = it.Time
					case imapclient.FetchItemDataBodySection:
						io.Copy(h, it.Literal)
					}
				}
				sort.Strings(flags)
				// The instant, not the zone: Dovecot's maildir keeps no zone and reports every
				// INTERNALDATE in its own (portcullis keeps the zone it is given; see
				// migrate.TestImapSourceKeepsZones).
				msgs = append(msgs, fmt.Sprintf("%x %d %s %s", h.Sum(nil)[:8], size, strings.Join(flags, ","), date.UTC().Format(time.RFC3339)))
			}
			require.NoError(t, cmd.Close())
		}
		sort.Strings(msgs)
		s.Msgs[l.Mailbox] = msgs
	}
	sort.Strings(s.Folders)
	sort.Strings(s.Subs)
	return s
}

func imapLogin(t *testing.T, addr, user, pass string, starttls bool) *imapclient.Client {
	t.Helper()
	var c *imapclient.Client
	var err error
	if starttls {
		c, err = imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	} else {
		c, err = imapclient.DialInsecure(addr, nil)
	}
	require.NoError(t, err)
	require.NoError(t, c.Login(user, pass).Wait())
	return c
}

func imapAppend(t *testing.T, c *imapclient.Client, folder string, msg []byte, flags []imap.Flag, date time.Time) {
	t.Helper()
	cmd := c.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: date})
	_, err := cmd.Write(msg)
	require.NoError(t, err)
	require.NoError(t, cmd.Close())
	_, err = cmd.Wait()
	require.NoError(t, err, "APPEND to %s", folder)
}

// pop3UIDLList logs in (after STLS when asked) and returns the UIDL list.
func pop3UIDLList(t *testing.T, addr, user, pass string, stls bool) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	var rw io.ReadWriter = conn
	r := bufio.NewReader(rw)
	line := func() string { l, _ := r.ReadString('\n'); return strings.TrimRight(l, "\r\n") }
	cmd := func(c string) string { fmt.Fprintf(rw, "%s\r\n", c); return line() }
	require.Contains(t, line(), "+OK")
	if stls {
		require.Contains(t, cmd("STLS"), "+OK")
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		require.NoError(t, tc.Handshake())
		rw = tc
		r = bufio.NewReader(tc)
	}
	require.Contains(t, cmd("USER "+user), "+OK")
	require.Contains(t, cmd("PASS "+pass), "+OK")
	require.Contains(t, cmd("UIDL"), "+OK")
	var out []string
	for l := line(); l != "." && l != ""; l = line() {
		f := strings.Fields(l)
		require.Len(t, f, 2, l)
		out = append(out, f[1])
	}
	cmd("QUIT")
	return out
}

var totalRe = regexp.MustCompile(`(?m)^TOTAL\s+\d+ users\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)

// migrateTotals runs the migration and returns the TOTAL row: source, copied, adopted,
// flags, removed, failed.
func migrateTotals(t *testing.T, bin string, args ...string) [6]int {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"migrate", "imap"}, args...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := totalRe.FindStringSubmatch(string(out))
	require.NotNil(t, m, "%s", out)
	var r [6]int
	for i := range r {
		r[i], _ = strconv.Atoi(m[i+1])
	}
	t.Logf("migrate %s: source %d copied %d adopted %d flags %d removed %d failed %d", strings.Join(args[len(args)-2:], " "), r[0], r[1], r[2], r[3], r[4], r[5])
	return r
}

// TestMigrateFromDovecot is the acceptance test of `portcullis migrate imap` against a
// real Dovecot: everything a user sees over IMAP and POP3 is the same on both sides after
// the migration, a second run copies nothing, a third picks up new mail and flag changes,
// runs killed with SIGKILL at random points leave no duplicate and nothing missing, and
// strict mode removes exactly the target-only messages.
func TestMigrateFromDovecot(t *testing.T) {
	const user = "alice@example.test"
	dc := migratetest.Start(t, user)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	bin, err := buildBinary()
	require.NoError(t, err)
	add := exec.Command(bin, "user", "add", user, "--password-stdin", "--config", cfg)
	add.Stdin = strings.NewReader("target-password-1\n")
	out, err := add.CombinedOutput()
	require.NoError(t, err, "%s", out)
	srv := startBinary(t, bin, cfg, "imap", "pop3", "managesieve")
	defer srv.kill()

	// Seed the source.
	src := imapLogin(t, dc.IMAPAddr(), user, migratetest.Password, false)
	defer src.Close()
	folders := []string{"Sent", "Drafts", "Junk", "Trash", "Archive", "Work", "Work/Projects", "Work/Projects/2024",
		"Über", "Über/Grüße", "日本語", "Empty"}
	for _, f := range folders {
		require.NoError(t, src.Create(f, nil).Wait(), f)
	}
	for _, f := range append([]string{"INBOX"}, folders...) {
		if f != "Empty" && f != "日本語" {
			require.NoError(t, src.Subscribe(f).Wait())
		}
	}
	berlin := time.FixedZone("CEST", 2*3600)
	past := time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	dstEdge := time.Date(2024, 3, 31, 1, 59, 59, 0, time.UTC) // one second before CET → CEST
	dstAmbig := time.Date(2024, 10, 27, 2, 30, 0, 0, berlin)  // a local time that happens twice
	plus14 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("", 14*3600))
	minus12 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("", -12*3600))
	msg := func(subj, body string) []byte {
		return []byte("From: Bob <bob@example.net>\r\nTo: alice@example.test\r\nSubject: " + subj +
			"\r\nMessage-ID: <" + subj + "@example.net>\r\nDate: Fri, 01 Mar 2024 10:00:00 +0000\r\n\r\n" + body + "\r\n")
	}
	imapAppend(t, src, "INBOX", msg("seen", "old"), []imap.Flag{imap.FlagSeen}, past)
	imapAppend(t, src, "INBOX", msg("answered", "x"), []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, "$Forwarded"}, dstEdge)
	imapAppend(t, src, "INBOX", msg("deleted", "x"), []imap.Flag{imap.FlagDeleted}, dstAmbig)
	imapAppend(t, src, "INBOX", msg("draft", "x"), []imap.Flag{imap.FlagDraft}, plus14)
	imapAppend(t, src, "INBOX", msg("keywords", "x"), []imap.Flag{"$Junk", "$MDNSent", "ProjectX"}, minus12)
	imapAppend(t, src, "INBOX", msg("dup", "same"), []imap.Flag{imap.FlagSeen}, past)
	imapAppend(t, src, "INBOX", msg("dup", "same"), []imap.Flag{imap.FlagSeen}, past)
	imapAppend(t, src, "INBOX", []byte("From: x@example.net\r\nSubject: no message-id\r\n\r\nnone\r\n"), nil, dstEdge)
	imapAppend(t, src, "INBOX", []byte("From: x@example.net\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln — ½ €\r\n"), nil, plus14)
	imapAppend(t, src, "Sent", msg("sent1", "x"), []imap.Flag{imap.FlagSeen}, past)
	imapAppend(t, src, "Sent", msg("sent2", "x"), []imap.Flag{imap.FlagSeen, imap.FlagAnswered}, minus12)
	imapAppend(t, src, "Drafts", msg("d", "x"), []imap.Flag{imap.FlagDraft}, plus14)
	imapAppend(t, src, "Junk", msg("j", "x"), []imap.Flag{"$Junk"}, past)
	imapAppend(t, src, "Trash", msg("t", "x"), []imap.Flag{imap.FlagDeleted, imap.FlagSeen}, past)
	for _, f := range []string{"Work", "Work/Projects", "Work/Projects/2024", "Über", "Über/Grüße", "日本語"} {
		imapAppend(t, src, f, msg("in-"+strconv.Itoa(len(f)), f), []imap.Flag{"$Forwarded"}, dstAmbig)
	}
	// A 40 MiB message.
	big := make([]byte, 0, 40<<20+1024)
	big = append(big, "From: big@example.net\r\nSubject: big\r\nContent-Type: application/octet-stream\r\n\r\n"...)
	rnd := rand.New(rand.NewPCG(1, 2))
	for len(big) < 40<<20 {
		line := make([]byte, 76)
		for i := range line {
			line[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[rnd.IntN(64)]
		}
		big = append(append(big, line...), '\r', '\n')
	}
	imapAppend(t, src, "Archive", big, []imap.Flag{imap.FlagSeen}, past)
	big = nil
	// A bare-LF message, dropped into the maildir as a local delivery agent would.
	bare := filepath.Join(dc.Maildir(user), "new", "1700000000.M1P1.mgt")
	require.NoError(t, os.WriteFile(bare, []byte("From: lf@example.net\nSubject: bare LF\n\nline one\nline two\n"), 0o644))
	os.Chown(bare, 65534, 65534)

	// Sieve scripts in Dovecot's layout: ~/sieve/NAME.sieve, the active one linked from
	// ~/.dovecot.sieve.
	if dc.SieveAddr() == "" {
		testenv.Unavailable(t, "dovecot-managesieved is not installed")
	}
	activeScript := "require [\"fileinto\", \"envelope\"];\r\nif envelope :is \"from\" \"boss@example.net\" {\r\n  fileinto \"Work\";\r\n}\r\n"
	home := dc.Home(user)
	require.NoError(t, os.MkdirAll(filepath.Join(home, "sieve"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(home, "sieve", "filters.sieve"), []byte(activeScript), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(home, "sieve", "spare.sieve"), []byte("keep;\r\n"), 0o644))
	require.NoError(t, os.Symlink("sieve/filters.sieve", filepath.Join(home, ".dovecot.sieve")))
	filepath.Walk(home, func(p string, _ os.FileInfo, _ error) error { os.Lchown(p, 65534, 65534); return nil })

	pwFile := filepath.Join(dir, "master.pw")
	require.NoError(t, os.WriteFile(pwFile, []byte(migratetest.MasterPassword+"\n"), 0o600))
	args := func(extra ...string) []string {
		return append([]string{"--config", cfg, "--host", dc.IMAPAddr(), "--security", "none", "--user", user,
			"--master", migratetest.Master, "--password-file", pwFile, "--pop3", dc.POP3Addr(), "-q", "--window", "7"}, extra...)
	}
	compare := func(stage string) mailboxSnapshot {
		t.Helper()
		dst := imapLogin(t, srv.addrs["imap"], user, "target-password-1", true)
		defer dst.Close()
		want, got := imapSnapshot(t, src), imapSnapshot(t, dst)
		require.Equal(t, want.Folders, got.Folders, "%s: folders", stage)
		require.Equal(t, want.Subs, got.Subs, "%s: subscriptions", stage)
		for f, ms := range want.Msgs {
			require.Equal(t, ms, got.Msgs[f], "%s: messages of %q", stage, f)
		}
		require.Equal(t, pop3UIDLList(t, dc.POP3Addr(), user, migratetest.Password, false),
			pop3UIDLList(t, srv.addrs["pop3"], user, "target-password-1", true), "%s: POP3 UIDLs", stage)
		return want
	}

	// The dry run copies nothing but says what it would.
	r := migrateTotals(t, bin, args("--dry-run")...)
	require.Equal(t, 22, r[1], "dry run: messages to copy")
	r = migrateTotals(t, bin, args()...)
	require.Equal(t, 22, r[1])
	require.Zero(t, r[5])
	snap := compare("first run")
	// New target folders took the source's UIDVALIDITY and UIDs.
	uidsOf := func(c *imapclient.Client, folder string) (uint32, []imap.UID) {
		sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
		require.NoError(t, err)
		data, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		require.NoError(t, err)
		return sel.UIDValidity, data.AllUIDs()
	}
	dst0 := imapLogin(t, srv.addrs["imap"], user, "target-password-1", true)
	for _, f := range []string{"INBOX", "Archive", "Über/Grüße"} {
		v1, u1 := uidsOf(src, f)
		v2, u2 := uidsOf(dst0, f)
		require.Equal(t, v1, v2, "UIDVALIDITY of %s", f)
		require.Equal(t, u1, u2, "UIDs of %s", f)
	}
	dst0.Close()
	require.Len(t, snap.Folders, 13)
	require.Len(t, snap.Msgs["INBOX"], 10)
	require.Empty(t, snap.Msgs["Empty"])

	// The Sieve scripts, then over ManageSieve on both sides: the same scripts, the same
	// text, the same one active.
	out, err = exec.Command(bin, "migrate", "sieve", "--config", cfg, "--host", dc.SieveAddr(), "--security", "none", "--user", user,
		"--master", migratetest.Master, "--password-file", pwFile, "--target", user).CombinedOutput()
	require.NoError(t, err, "%s", out)
	want, err := migrate.ScriptsFromManageSieve(context.Background(), migrate.ImapConfig{Addr: dc.SieveAddr(), Security: "none",
		User: user, Password: migratetest.Password})
	require.NoError(t, err)
	got, err := migrate.ScriptsFromManageSieve(context.Background(), migrate.ImapConfig{Addr: srv.addrs["managesieve"], Security: "starttls",
		TLSConfig: &tls.Config{InsecureSkipVerify: true}, User: user, Password: "target-password-1"})
	require.NoError(t, err)
	sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
	sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
	require.Len(t, want, 2)
	require.Equal(t, want, got, "Sieve scripts over ManageSieve")
	require.True(t, got[0].Active && got[0].Name == "filters" && string(got[0].Text) == activeScript)

	// A second run copies nothing.
	r = migrateTotals(t, bin, args()...)
	require.Equal(t, [6]int{22, 0, 0, 0, 0, 0}, r)

	// New mail and flag changes at the source: a third run picks them up.
	imapAppend(t, src, "INBOX", msg("new1", "x"), nil, time.Now())
	imapAppend(t, src, "INBOX", msg("new2", "x"), []imap.Flag{"$MDNSent"}, time.Now())
	imapAppend(t, src, "Über", msg("new3", "x"), nil, time.Now())
	_, err = src.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.NoError(t, src.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{imap.FlagSeen}, Silent: true}, nil).Close())
	require.NoError(t, src.Store(imap.UIDSetNum(8), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "Later"}, Silent: true}, nil).Close())
	r = migrateTotals(t, bin, args("--sync-flags")...)
	require.Equal(t, 3, r[1], "third run: copied")
	require.Equal(t, 2, r[3], "third run: flags synced")
	compare("third run")

	// Runs killed with SIGKILL at random points (after a random number of messages reached
	// the target's maildir, so the kill lands inside the copy, whatever the machine's
	// speed), each followed by a run to the end: no duplicate, nothing missing, and the
	// interrupted copies are adopted.
	seed := time.Now().UnixNano()
	t.Logf("kill seed %d", seed)
	kr := rand.New(rand.NewPCG(uint64(seed), 7))
	target := filepath.Join(dir, "data/mail/example.test/alice/Maildir")
	countFiles := func() int {
		n := 0
		filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (filepath.Base(filepath.Dir(p)) == "new" || filepath.Base(filepath.Dir(p)) == "cur") {
				n++
			}
			return nil
		})
		return n
	}
	adopted := 0
	for round := range 3 {
		for i := range 60 {
			f := []string{"INBOX", "Work", "Über/Grüße"}[i/20]
			imapAppend(t, src, f, msg(fmt.Sprintf("kill%d-%d", round, i), strings.Repeat("body line\r\n", kr.IntN(200))), nil, past)
		}
		k := 1 + kr.IntN(58)
		if k%20 == 0 {
			k++ // not at a folder's end, where its records were just committed
		}
		base := countFiles()
		cmd := exec.Command(bin, append([]string{"migrate", "imap"}, args()...)...)
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		killed := false
		for deadline := time.Now().Add(2 * time.Minute); !killed && time.Now().Before(deadline); {
			select {
			case err := <-exited:
				t.Fatalf("round %d: the run ended before %d messages were copied: %v", round, k, err)
			case <-time.After(time.Millisecond):
			}
			if countFiles() >= base+k {
				cmd.Process.Signal(syscall.SIGKILL)
				<-exited
				killed = true
			}
		}
		require.True(t, killed, "round %d: %d messages not copied in time", round, k)
		r = migrateTotals(t, bin, args()...)
		require.Zero(t, r[5])
		adopted += r[2]
		t.Logf("round %d: killed after %d messages; the next run adopted %d", round, k, r[2])
	}
	require.Positive(t, adopted, "no interrupted copy was adopted")
	compare("after SIGKILLs")

	// Strict mode: two messages only at the target, one expunged at the source.
	dst := imapLogin(t, srv.addrs["imap"], user, "target-password-1", true)
	imapAppend(t, dst, "INBOX", msg("target-only-1", "x"), nil, time.Now())
	imapAppend(t, dst, "Work", msg("target-only-2", "x"), nil, time.Now())
	dst.Close()
	_, err = src.Select("Work/Projects", nil).Wait()
	require.NoError(t, err)
	require.NoError(t, src.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close())
	require.NoError(t, src.UIDExpunge(imap.UIDSetNum(1)).Close())
	r = migrateTotals(t, bin, args("--delete")...)
	require.Equal(t, 3, r[4], "strict mode: removed")
	require.Zero(t, r[1])
	compare("strict mode")
}

// TestMigrateManyUsers migrates the users of a CSV in parallel through the source's
// master login, each into its own target user.
func TestMigrateManyUsers(t *testing.T) {
	users := []string{"bob@example.test", "carol@example.test", "dan@example.test"}
	dc := migratetest.Start(t, users...)
	for i, u := range users {
		c := imapLogin(t, dc.IMAPAddr(), u, migratetest.Password, false)
		for j := range i + 1 {
			imapAppend(t, c, "INBOX", []byte(fmt.Sprintf("Subject: %s %d\r\n\r\nx\r\n", u, j)), nil, time.Now())
		}
		c.Close()
	}
	dir := t.TempDir()
	bin, err := buildBinary()
	require.NoError(t, err)
	csv := "user,password,target\nbob@example.test,,\ncarol@example.test,,carol.new@example.test\ndan@example.test,,\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "users.csv"), []byte(csv), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pw"), []byte(migratetest.MasterPassword), 0o600))
	out, err := exec.Command(bin, "--data", filepath.Join(dir, "data"), "migrate", "imap", "--host", dc.IMAPAddr(), "--security", "none",
		"--master", migratetest.Master, "--password-file", filepath.Join(dir, "pw"), "--users", filepath.Join(dir, "users.csv"),
		"--parallel", "2", "-q").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Regexp(t, `TOTAL\s+3 users\s+6\s+6\s`, string(out))
	for u, n := range map[string]int{"bob": 1, "carol.new": 2, "dan": 3} {
		files, _ := filepath.Glob(filepath.Join(dir, "data/mail/example.test", u, "Maildir/new/*"))
		require.Len(t, files, n, u)
	}
}
