package migrate_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/migratetest"
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
