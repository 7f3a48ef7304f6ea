package migrate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/migratetest"
	"github.com/portcullis-mail/portcullis/sieve"
)

// appendTo appends a message to a Dovecot folder over IMAP.
func appendTo(t *testing.T, c *imapclient.Client, folder, msg string, flags []imap.Flag, date time.Time) {
	t.Helper()
	cmd := c.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: date})
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("APPEND to %s: %v", folder, err)
	}
}

// TestImapSourceFromDovecot copies a small mailbox from a real Dovecot through a master
// login: folder names in modified UTF-7 decoded, special use matched, flags, keywords,
// dates and POP3 UIDLs kept.
func TestImapSourceFromDovecot(t *testing.T) {
	ctx := context.Background()
	dc := migratetest.Start(t, "alice@example.org")
	c, err := imapclient.DialInsecure(dc.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.org", migratetest.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Sent", "Grüße", "Grüße/Übersee", "Trash"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", f, err)
		}
		c.Subscribe(f).Wait()
	}
	date := time.Date(2019, 10, 27, 2, 30, 0, 0, time.FixedZone("", 14*3600))
	appendTo(t, c, "INBOX", "Subject: a\r\n\r\nA\r\n", []imap.Flag{imap.FlagSeen, "$Forwarded", "ProjectX"}, date)
	appendTo(t, c, "INBOX", "Subject: b\r\n\r\nB\r\n", nil, date)
	appendTo(t, c, "Grüße/Übersee", "Subject: c\r\n\r\nC\r\n", []imap.Flag{imap.FlagDeleted}, date)
	appendTo(t, c, "Sent", "Subject: d\r\n\r\nD\r\n", []imap.Flag{imap.FlagSeen}, date)

	src, err := migrate.DialImap(ctx, migrate.ImapConfig{Addr: dc.IMAPAddr(), Security: "none", User: "alice@example.org",
		Master: migratetest.Master, Password: migratetest.MasterPassword, POP3Addr: dc.POP3Addr()})
	if err != nil {
		t.Fatalf("%v\n%s", err, dc.Log())
	}
	defer src.Close()
	folders, err := src.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range folders {
		names = append(names, f.Name+"|"+f.SpecialUse)
	}
	for _, want := range []string{"INBOX|", `Sent|\Sent`, "Grüße/Übersee|", `Trash|\Trash`} {
		if !slices.Contains(names, want) {
			t.Errorf("folders %q lack %q", names, want)
		}
	}
	s, tg := newTarget(t)
	st := openState(t)
	res, err := migrate.Run(ctx, src, tg, st, migrate.Options{Source: "imap", TargetUser: "alice@example.org", KeepUIDs: true})
	if err != nil || res.Totals().Copied != 4 || res.Totals().Err != nil {
		t.Fatalf("run: %+v %v", res.Totals(), err)
	}
	u, _ := s.Open(ctx, "alice@example.org")
	defer u.Release()
	mb, ms, _ := u.Messages(ctx, "INBOX")
	if len(ms) != 2 || !slices.Equal(ms[0].Flags, []string{"$Forwarded", "ProjectX", `\Seen`}) || !ms[0].InternalDate.Equal(date) {
		t.Fatalf("INBOX: %+v", ms)
	}
	uidls, _ := u.UIDLs(ctx, mb)
	if len(uidls) != 2 || !strings.HasPrefix(uidls[ms[0].UID], "00000001") {
		t.Errorf("uidls = %v", uidls)
	}
	if _, ms, _ := u.Messages(ctx, "Grüße/Übersee"); len(ms) != 1 || !slices.Equal(ms[0].Flags, []string{`\Deleted`}) {
		t.Errorf("Grüße/Übersee: %+v", ms)
	}
	subs, _ := u.Subscriptions(ctx)
	if !slices.Contains(subs, "Grüße/Übersee") {
		t.Errorf("subscriptions %q", subs)
	}
	res, err = migrate.Run(ctx, src, tg, st, migrate.Options{Source: "imap", TargetUser: "alice@example.org"})
	if err != nil || res.Totals().Copied != 0 {
		t.Fatalf("second run: %+v %v", res.Totals(), err)
	}
}

// TestMaildirFromDovecot imports the maildir a real Dovecot wrote (dovecot-uidlist,
// dovecot-keywords, Maildir++ names in modified UTF-7) and checks against that Dovecot's
// own IMAP and POP3: the same UIDVALIDITY and UIDs, flags and keywords, and POP3 UIDLs.
func TestMaildirFromDovecot(t *testing.T) {
	ctx := context.Background()
	dc := migratetest.Start(t, "bob@example.org")
	c, err := imapclient.DialInsecure(dc.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("bob@example.org", migratetest.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Create("Entwürfe/Alt", nil).Wait()
	date := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for i := range 5 {
		appendTo(t, c, "INBOX", fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i), []imap.Flag{imap.FlagSeen, imap.Flag(fmt.Sprintf("Kw%d", i%2)), "$MDNSent"}, date)
	}
	appendTo(t, c, "Entwürfe/Alt", "Subject: x\r\n\r\ny\r\n", []imap.Flag{imap.FlagAnswered, "$Forwarded"}, date)
	// Expunge one so that the UIDs have a gap.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close()
	c.UIDExpunge(imap.UIDSetNum(2)).Close()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	pop := dovecotUIDLs(t, dc)
	c.Logout().Wait()

	src, err := migrate.NewMaildirSource(dc.Maildir("bob@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	s, tg := newTarget(t)
	st := openState(t)
	res, err := migrate.Run(ctx, src, tg, st, migrate.Options{Source: "maildir", TargetUser: "alice@example.org", KeepUIDs: true})
	if err != nil || res.Totals().Copied != 5 || res.Totals().Err != nil {
		t.Fatalf("run: %+v %v", res.Totals(), err)
	}
	u, _ := s.Open(ctx, "alice@example.org")
	defer u.Release()
	mb, ms, _ := u.Messages(ctx, "INBOX")
	if mb.UIDValidity != sel.UIDValidity || len(ms) != len(want) {
		t.Fatalf("uidvalidity %d (want %d), %d messages (want %d)", mb.UIDValidity, sel.UIDValidity, len(ms), len(want))
	}
	uidls, _ := u.UIDLs(ctx, mb)
	for i, w := range want {
		var wf []string
		for _, f := range w.Flags {
			if f != `\Recent` {
				wf = append(wf, string(f))
			}
		}
		slices.Sort(wf)
		if uint32(w.UID) != ms[i].UID || !slices.Equal(wf, ms[i].Flags) {
			t.Errorf("message %d: uid %d flags %q, want uid %d flags %q", i, ms[i].UID, ms[i].Flags, w.UID, wf)
		}
		if uidls[ms[i].UID] != pop[i] {
			t.Errorf("message %d: uidl %q, Dovecot's POP3 says %q", i, uidls[ms[i].UID], pop[i])
		}
	}
	if _, ms, err := u.Messages(ctx, "Entwürfe/Alt"); err != nil || len(ms) != 1 || !slices.Equal(ms[0].Flags, []string{"$Forwarded", `\Answered`}) {
		t.Errorf("Entwürfe/Alt: %+v %v", ms, err)
	}
}

// dovecotUIDLs returns the INBOX's UIDL list from Dovecot's POP3 server.
func dovecotUIDLs(t *testing.T, dc *migratetest.Dovecot) []string {
	t.Helper()
	conn, err := net.Dial("tcp", dc.POP3Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	line := func() string { l, _ := r.ReadString('\n'); return strings.TrimRight(l, "\r\n") }
	line()
	fmt.Fprintf(conn, "USER bob@example.org\r\nPASS %s\r\nUIDL\r\n", migratetest.Password)
	line()
	line()
	if l := line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("UIDL: %s", l)
	}
	var out []string
	for l := line(); l != "." && l != ""; l = line() {
		out = append(out, strings.Fields(l)[1])
	}
	return out
}

// TestSieveFromDovecot reads a user's scripts from Dovecot's ManageSieve server (through
// the master login) and from the files behind it, and compiles them with portcullis's
// Sieve compiler: the valid active script is kept with its text, the broken one is
// reported.
func TestSieveFromDovecot(t *testing.T) {
	ctx := context.Background()
	dc := migratetest.Start(t, "carol@example.org")
	if dc.SieveAddr() == "" {
		testenv.Unavailable(t, "dovecot-managesieved is not installed")
	}
	home := dc.Home("carol@example.org")
	os.MkdirAll(filepath.Join(home, "sieve"), 0o755)
	main := "require [\"fileinto\"];\r\nif header :contains \"subject\" \"[go]\" {\r\n  fileinto \"Lists/go\";\r\n}\r\n"
	os.WriteFile(filepath.Join(home, "sieve", "main.sieve"), []byte(main), 0o644)
	os.WriteFile(filepath.Join(home, "sieve", "broken.sieve"), []byte("if true { keep\r\n"), 0o644)
	// A script named like a status: a string in LISTSCRIPTS, not the end of it.
	os.WriteFile(filepath.Join(home, "sieve", "OK.sieve"), []byte("keep;\r\n"), 0o644)
	os.Symlink("sieve/main.sieve", filepath.Join(home, ".dovecot.sieve"))
	filepath.Walk(home, func(p string, _ os.FileInfo, _ error) error { os.Lchown(p, 65534, 65534); return nil })

	scripts, err := migrate.ScriptsFromManageSieve(ctx, migrate.ImapConfig{Addr: dc.SieveAddr(), Security: "none",
		User: "carol@example.org", Master: migratetest.Master, Password: migratetest.MasterPassword})
	if err != nil {
		t.Fatalf("%v\n%s", err, dc.Log())
	}
	files, err := migrate.ScriptsFromDir(filepath.Join(home, "sieve"), filepath.Join(home, ".dovecot.sieve"))
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range [][]migrate.Script{scripts, files} {
		sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
		if len(got) != 3 || got[0].Name != "OK" || string(got[0].Text) != "keep;\r\n" || got[0].Active ||
			got[2].Name != "main" || !got[2].Active || got[1].Active || string(got[2].Text) != main {
			t.Fatalf("scripts %+v", got)
		}
	}
	tgt := &memScripts{}
	res, err := migrate.MigrateScripts(ctx, scripts, tgt, func(b []byte) error { _, err := sieve.Compile(b, sieve.Options{}); return err })
	if err != nil {
		t.Fatal(err)
	}
	if res[1].Name != "broken" || res[1].Action != "not compiled" || res[1].Err == nil || res[0].Action != "stored" || res[2].Action != "stored" {
		t.Fatalf("results %+v", res)
	}
	if string(tgt.scripts["main"]) != main || tgt.active != "main" || len(tgt.scripts) != 2 {
		t.Fatalf("target %+v", tgt)
	}

	// Removing them, as portcullis user move does from the old back-end: the active one
	// is deactivated first (RFC 5804 §2.10 refuses to delete it).
	c, err := migrate.DialManageSieve(ctx, migrate.ImapConfig{Addr: dc.SieveAddr(), Security: "none",
		User: "carol@example.org", Master: migratetest.Master, Password: migratetest.MasterPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Delete("main"); err == nil {
		t.Fatal("the active script was deleted")
	}
	if _, err := c.Get("nothing"); !errors.Is(err, migrate.ErrNoSieveScript) {
		t.Fatalf("GETSCRIPT of no script: %v", err)
	}
	if err := c.SetActive(""); err != nil {
		t.Fatal(err)
	}
	for _, s := range scripts {
		if err := c.Delete(s.Name); err != nil {
			t.Fatal(err)
		}
	}
	if left, err := c.Scripts(); err != nil || len(left) != 0 {
		t.Fatalf("after deleting: %+v, %v", left, err)
	}
}

type memScripts struct {
	scripts map[string][]byte
	active  string
}

func (m *memScripts) PutScript(_ context.Context, name string, text []byte) error {
	if m.scripts == nil {
		m.scripts = map[string][]byte{}
	}
	m.scripts[name] = text
	return nil
}

func (m *memScripts) SetActive(_ context.Context, name string) error { m.active = name; return nil }
