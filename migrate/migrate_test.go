package migrate_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/storetarget"
	"github.com/portcullis-mail/portcullis/store"
)

// writeMaildir writes a Dovecot-style maildir: INBOX with three messages (one with the
// keyword letter a = $Forwarded... a custom keyword), a nested folder in modified UTF-7,
// dovecot-keywords, dovecot-uidlist with UIDVALIDITY 1700000000 and a P record, and
// subscriptions.
func writeMaildir(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"", ".Entw&APw-rfe", ".Lists.go", ".Sent"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	put := func(dir, name, body string, date time.Time) {
		p := filepath.Join(root, dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, date, date)
	}
	d1 := time.Date(2011, 3, 27, 1, 59, 59, 0, time.UTC)
	put("", "cur/1000.M1P1.old:2,Sa", "Subject: one\r\n\r\nfirst\r\n", d1)
	put("", "cur/1001.M2P1.old:2,RFb", "Subject: two\n\nbare LF body\n", d1.Add(time.Hour))
	put("", "new/1002.M3P1.old", "Subject: three\r\n\r\n8-bit \xe9t\xe9\r\n", d1.Add(2*time.Hour))
	put(".Lists.go", "cur/1003.M4P1.old:2,S", "Subject: go\r\n\r\ngo\r\n", d1)
	put(".Entw&APw-rfe", "cur/1004.M5P1.old:2,D", "Subject: draft\r\n\r\ndraft\r\n", d1)
	os.WriteFile(filepath.Join(root, "dovecot-keywords"), []byte("0 $MDNSent\n1 Project-X\n"), 0o600)
	os.WriteFile(filepath.Join(root, "dovecot-uidlist"), []byte("3 V1700000000 N8 Gabc\n3 P0042abcd :1000.M1P1.old\n5 :1001.M2P1.old:2,RFb\n7 :1002.M3P1.old\n"), 0o600)
	os.WriteFile(filepath.Join(root, "subscriptions"), []byte("V\t2\n\nLists\tgo\nEntw&APw-rfe\n"), 0o600)
	return root
}

func newTarget(t *testing.T) (*store.Store, *storetarget.Target) {
	t.Helper()
	s, err := store.New(store.Config{Dir: filepath.Join(t.TempDir(), "mail")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tg, err := storetarget.Open(context.Background(), s, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	return s, tg
}

func openState(t *testing.T) *migrate.State {
	t.Helper()
	st, err := migrate.OpenState(filepath.Join(t.TempDir(), "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// snapshot is a folder's content: sorted "sha256 flags date" lines.
func snapshot(t *testing.T, s *store.Store, folder string) []string {
	t.Helper()
	u, err := s.Open(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	mb, ms, err := u.Messages(context.Background(), folder)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		f, err := u.Open(mb, m)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		out = append(out, fmt.Sprintf("%x %s %s", h.Sum(nil)[:6], strings.Join(m.Flags, ","), m.InternalDate.UTC().Format(time.RFC3339)))
	}
	sort.Strings(out)
	return out
}

func TestMaildirImportKeepsEverythingAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	root := writeMaildir(t)
	s, tg := newTarget(t)
	st := openState(t)
	src, err := migrate.NewMaildirSource(root)
	if err != nil {
		t.Fatal(err)
	}
	opt := migrate.Options{Source: "maildir:" + root, TargetUser: "alice@example.org", KeepUIDs: true}
	res, err := migrate.Run(ctx, src, tg, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	if tot := res.Totals(); tot.Copied != 5 || tot.Err != nil {
		t.Fatalf("first run: %+v", tot)
	}
	inbox := snapshot(t, s, "INBOX")
	if len(inbox) != 3 || !strings.Contains(strings.Join(inbox, "|"), "$MDNSent,\\Seen 2011-03-27T01:59:59Z") ||
		!strings.Contains(strings.Join(inbox, "|"), "Project-X,\\Answered,\\Flagged 2011-03-27T02:59:59Z") {
		t.Fatalf("INBOX = %q", inbox)
	}
	// The source announces no special use: "Entwürfe" is known by its name as the drafts
	// folder, and goes into the target's.
	if got := snapshot(t, s, "Drafts"); len(got) != 1 || !strings.Contains(got[0], `\Draft`) {
		t.Fatalf("Drafts = %q", got)
	}
	u, _ := s.Open(ctx, "alice@example.org")
	defer u.Release()
	subs, _ := u.Subscriptions(ctx)
	if !slices.Contains(subs, "Lists/go") || !slices.Contains(subs, "Drafts") {
		t.Errorf("subscriptions = %q", subs)
	}
	// UIDVALIDITY, UIDs and the POP3 unique-ids are those of the source.
	mb, ms, _ := u.Messages(ctx, "INBOX")
	if mb.UIDValidity != 1700000000 || len(ms) != 3 || ms[0].UID != 3 || ms[1].UID != 5 || ms[2].UID != 7 {
		t.Fatalf("INBOX uidvalidity %d uids %v", mb.UIDValidity, ms)
	}
	uidls, _ := u.UIDLs(ctx, mb)
	if uidls[3] != "0042abcd" || uidls[5] != "000000056553f100" || uidls[7] != "000000076553f100" {
		t.Errorf("uidls = %v", uidls)
	}

	res, err = migrate.Run(ctx, src, tg, st, opt)
	if err != nil || res.Totals().Copied != 0 {
		t.Fatalf("second run copied %d: %v", res.Totals().Copied, err)
	}
	if got := snapshot(t, s, "INBOX"); !slices.Equal(got, inbox) {
		t.Fatalf("second run changed INBOX: %q", got)
	}
}

// TestInterruptedCopyIsAdopted simulates a crash between the append and the record of
// its UID: the state holds intents, the target holds the messages; the next run must
// adopt them, not copy them again.
func TestInterruptedCopyIsAdopted(t *testing.T) {
	ctx := context.Background()
	root := writeMaildir(t)
	s, tg := newTarget(t)
	st := openState(t)
	src, _ := migrate.NewMaildirSource(root)
	opt := migrate.Options{Source: "maildir:" + root, TargetUser: "alice@example.org", Batch: 1}
	cctx, cancel := context.WithCancel(ctx)
	crash := &crashingTarget{Target: tg, after: 2, cancel: cancel}
	if _, err := migrate.Run(cctx, src, crash, st, opt); err == nil {
		t.Fatal("the crashing run did not stop")
	}
	res, err := migrate.Run(ctx, src, tg, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	tot := res.Totals()
	if tot.Adopted != 1 || tot.Copied != 2 {
		t.Fatalf("after crash: %+v", tot)
	}
	if got := snapshot(t, s, "INBOX"); len(got) != 3 {
		t.Fatalf("INBOX after crash and re-run: %q", got)
	}
}

// crashingTarget appends, then fails as a killed process would before telling the
// caller, after a number of appends.
type crashingTarget struct {
	*storetarget.Target
	after  int
	cancel func()
}

func (c *crashingTarget) Commit(ctx context.Context, folder string, ps []migrate.Prepared) ([]uint32, []error) {
	uids, errs := c.Target.Commit(ctx, folder, ps)
	c.after -= len(ps)
	if c.after < 0 {
		c.cancel()
		for i := range errs {
			errs[i] = context.Canceled
		}
	}
	return uids, errs
}

func TestMaildirXUIDL(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(root, sub), 0o700)
	}
	os.WriteFile(filepath.Join(root, "cur", "1.a.b:2,S"), []byte("Subject: x\nX-UIDL: 3f2a7b9c01\n\nbody\n"), 0o600)
	os.WriteFile(filepath.Join(root, "cur", "2.a.b:2,S"), []byte("Subject: y\n\nX-UIDL: in-the-body\n"), 0o600)
	src, _ := migrate.NewMaildirSource(root)
	src.XUIDL = true
	s, tg := newTarget(t)
	if _, err := migrate.Run(ctx, src, tg, openState(t), migrate.Options{Source: "m", TargetUser: "alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	u, _ := s.Open(ctx, "alice@example.org")
	defer u.Release()
	mb, ms, _ := u.Messages(ctx, "INBOX")
	uidls, _ := u.UIDLs(ctx, mb)
	if len(ms) != 2 || len(uidls) != 1 || uidls[ms[0].UID] != "3f2a7b9c01" {
		t.Fatalf("uidls %v", uidls)
	}
}

// TestUIDValidityChange: the source renumbered a folder (a new UIDVALIDITY): what was
// copied is matched by content, so nothing is copied twice, and new mail still comes.
func TestUIDValidityChange(t *testing.T) {
	ctx := context.Background()
	root := writeMaildir(t)
	s, tg := newTarget(t)
	st := openState(t)
	src, _ := migrate.NewMaildirSource(root)
	opt := migrate.Options{Source: "maildir:" + root, TargetUser: "alice@example.org"}
	if _, err := migrate.Run(ctx, src, tg, st, opt); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "dovecot-uidlist"), []byte("3 V1800000000 N9 Gabc\n"), 0o600)
	os.WriteFile(filepath.Join(root, "new", "2000.M9P1.old"), []byte("Subject: after\r\n\r\nnew\r\n"), 0o600)
	res, err := migrate.Run(ctx, src, tg, st, opt)
	if err != nil || res.Totals().Copied != 1 {
		t.Fatalf("after renumbering: %+v %v", res.Totals(), err)
	}
	if got := snapshot(t, s, "INBOX"); len(got) != 4 {
		t.Fatalf("INBOX %q", got)
	}
	res, err = migrate.Run(ctx, src, tg, st, opt)
	if err != nil || res.Totals().Copied != 0 {
		t.Fatalf("third run: %+v %v", res.Totals(), err)
	}
}

// TestExpungeGone: a catch-up run with ExpungeGone removes at the target the copy of a
// message expunged at the source since the first run (a dry run counts it and changes
// nothing), and leaves a message at the target that the state never copied.
func TestExpungeGone(t *testing.T) {
	ctx := context.Background()
	root := writeMaildir(t)
	s, tg := newTarget(t)
	st := openState(t)
	src, err := migrate.NewMaildirSource(root)
	if err != nil {
		t.Fatal(err)
	}
	opt := migrate.Options{Source: "maildir:" + root, TargetUser: "alice@example.org", KeepUIDs: true, ExpungeGone: true}
	if res, err := migrate.Run(ctx, src, tg, st, opt); err != nil || res.Totals().Copied != 5 {
		t.Fatalf("first run: %+v %v", res.Totals(), err)
	}
	// A message the copy did not bring (delivered here, say), and one expunged at the
	// source after the first run (UID 5).
	p, err := tg.Prepare(ctx, "INBOX", strings.NewReader("Subject: here\r\n\r\nhere\r\n"), migrate.SourceMessage{Date: time.Now()}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, errs := tg.Commit(ctx, "INBOX", []migrate.Prepared{p}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if err := os.Remove(filepath.Join(root, "cur", "1001.M2P1.old:2,RFb")); err != nil {
		t.Fatal(err)
	}
	uids := func() []uint32 {
		u, err := s.Open(ctx, "alice@example.org")
		if err != nil {
			t.Fatal(err)
		}
		defer u.Release()
		_, ms, err := u.Messages(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		var out []uint32
		for _, m := range ms {
			out = append(out, m.UID)
		}
		return out
	}
	dry := opt
	dry.DryRun = true
	if res, err := migrate.Run(ctx, src, tg, st, dry); err != nil || res.Totals().Removed != 1 {
		t.Fatalf("dry run: %+v %v", res.Totals(), err)
	}
	if got := uids(); !slices.Equal(got, []uint32{3, 5, 7, 100}) {
		t.Fatalf("the dry run changed INBOX: %v", got)
	}
	if res, err := migrate.Run(ctx, src, tg, st, opt); err != nil || res.Totals().Removed != 1 || res.Totals().Copied != 0 {
		t.Fatalf("catch-up run: %+v %v", res.Totals(), err)
	}
	if got := uids(); !slices.Equal(got, []uint32{3, 7, 100}) {
		t.Fatalf("INBOX after the catch-up: %v, want the expunged UID 5 gone and the others kept", got)
	}
	if res, err := migrate.Run(ctx, src, tg, st, dry); err != nil || res.Totals().Removed != 0 || res.Totals().Copied != 0 {
		t.Fatalf("a run after the catch-up has work left: %+v %v", res.Totals(), err)
	}
}
