package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/store/maildir"
)

func newStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func msg(subject string) io.Reader {
	return strings.NewReader("From: a@example.org\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n")
}

func open(t *testing.T, s *Store, user string) *User {
	t.Helper()
	u, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Release)
	return u
}

func TestLayoutAndSpecialUse(t *testing.T) {
	s := newStore(t, Config{})
	u := open(t, s, "Alice@Example.ORG")
	if u.Name() != "alice@example.org" {
		t.Fatalf("name %q", u.Name())
	}
	root := filepath.Join(s.cfg.Dir, "example.org", "alice", "Maildir")
	for _, d := range []string{"cur", "new", "tmp", ".Sent/cur", ".Drafts/new", ".Junk/tmp", ".Trash/cur"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v", d, err)
		}
	}
	mbs, err := u.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mb := range mbs {
		got = append(got, mb.Name+"="+mb.SpecialUse)
	}
	if strings.Join(got, ",") != `INBOX=,Drafts=\Drafts,Junk=\Junk,Sent=\Sent,Trash=\Trash` {
		t.Fatalf("mailboxes %v", got)
	}
}

func TestMailboxNamesCannotEscape(t *testing.T) {
	s := newStore(t, Config{})
	u := open(t, s, "bob@example.org")
	ctx := context.Background()
	for _, bad := range []string{"", "..", ".", "../x", "a/../b", "a/./b", "a//b", "/abs", "a/", "x\x00y", "x\ny", "a.b", `a\b`, "..%2f", "*", "%", strings.Repeat("x", 300), "\xff"} {
		if err := u.Create(ctx, bad, ""); !errors.Is(err, ErrBadName) {
			t.Errorf("Create(%q) = %v, want ErrBadName", bad, err)
		}
	}
	for _, bad := range []string{"../x", "", "a/b@c", ".hidden@x", "x@../y", "x\x00@y", "@x", "x@"} {
		if _, err := s.Open(ctx, bad); !errors.Is(err, ErrBadName) {
			t.Errorf("Open(%q) = %v, want ErrBadName", bad, err)
		}
	}
	// Everything that exists stays below the store root.
	filepath.Walk(filepath.Dir(s.cfg.Dir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !strings.HasPrefix(p, s.cfg.Dir) && p != filepath.Dir(s.cfg.Dir) {
			t.Errorf("file outside the store: %s", p)
		}
		return nil
	})
	if err := u.Create(ctx, "Lists/go/nuts", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(string(u.root), ".Lists.go.nuts", "cur")); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Mailbox(ctx, "Lists/go"); err != nil {
		t.Fatalf("parent not created: %v", err)
	}
	if n, _ := CanonicalMailbox("inbox"); n != "INBOX" {
		t.Fatalf("inbox canonical %q", n)
	}
}

func TestDeliverFlagsExpungeMoveCopy(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		uid, err := s.Deliver(ctx, "carol@example.org", "", msg(fmt.Sprint("m", i)), nil)
		if err != nil || uid != uint32(i) {
			t.Fatalf("deliver %d: uid %d %v", i, uid, err)
		}
	}
	u := open(t, s, "carol@example.org")
	mb, msgs, err := u.Messages(ctx, "INBOX")
	if err != nil || len(msgs) != 3 || mb.UIDNext != 4 || mb.UIDValidity == 0 {
		t.Fatalf("%+v %d %v", mb, len(msgs), err)
	}
	w := u.Watch(mb)
	defer w.Close()
	ch, err := u.SetFlags(ctx, mb, []uint32{1, 2}, FlagsAdd, []string{`\seen`, "$Label1", `\Deleted`}, "me")
	if err != nil || len(ch) != 2 {
		t.Fatalf("%v %v", ch, err)
	}
	if strings.Join(ch[0].Flags, " ") != `$Label1 \Deleted \Seen` {
		t.Fatalf("flags %v", ch[0].Flags)
	}
	if !strings.HasSuffix(ch[0].File, ":2,ST") || !strings.HasPrefix(ch[0].File, "cur/") {
		t.Fatalf("file %s", ch[0].File)
	}
	f, err := u.Open(mb, msgs[0]) // stale record: found by key
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if !strings.Contains(string(b), "body of m1") {
		t.Fatalf("content %q", b)
	}
	if _, err := u.SetFlags(ctx, mb, []uint32{2}, FlagsRemove, []string{`\Deleted`}, nil); err != nil {
		t.Fatal(err)
	}
	gone, err := u.Expunge(ctx, mb, nil)
	if err != nil || fmt.Sprint(gone) != "[1]" {
		t.Fatalf("expunge %v %v", gone, err)
	}
	res, err := u.Move(ctx, mb, []uint32{2, 3}, "Trash")
	if err != nil || fmt.Sprint(res.SrcUIDs, res.DstUIDs) != "[2 3] [1 2]" {
		t.Fatalf("move %+v %v", res, err)
	}
	evs, over := w.Take()
	if over || len(evs) != 4 || evs[0].Kind != FlagsChanged || evs[0].Source != "me" || evs[2].Kind != Expunged || evs[3].Kind != Expunged || fmt.Sprint(evs[3].UIDs) != "[2 3]" {
		t.Fatalf("events %+v", evs)
	}
	_, msgs, _ = u.Messages(ctx, "INBOX")
	tmb, tmsgs, _ := u.Messages(ctx, "Trash")
	if len(msgs) != 0 || len(tmsgs) != 2 || strings.Join(tmsgs[0].Flags, " ") != `$Label1 \Seen` {
		t.Fatalf("after move: %v %+v", msgs, tmsgs)
	}
	cres, err := u.Copy(ctx, tmb, []uint32{1}, "INBOX")
	if err != nil || fmt.Sprint(cres.DstUIDs) != "[4]" {
		t.Fatalf("copy %+v %v", cres, err)
	}
	st, err := u.Status(ctx, "INBOX")
	if err != nil || st.Messages != 1 || st.Unseen != 0 || st.UIDNext != 5 {
		t.Fatalf("status %+v %v", st, err)
	}
	st, _ = u.Status(ctx, "Trash")
	if st.Messages != 2 || st.Unseen != 1 {
		t.Fatalf("trash status %+v", st)
	}
}

func TestQuota(t *testing.T) {
	s := newStore(t, Config{Quota: 200, MaxMessageSize: 150})
	ctx := context.Background()
	if _, err := s.Deliver(ctx, "d@x.org", "", strings.NewReader(strings.Repeat("a", 151)), nil); !errors.Is(err, ErrTooBig) {
		t.Fatalf("too big: %v", err)
	}
	if _, err := s.Deliver(ctx, "d@x.org", "", strings.NewReader(strings.Repeat("a", 120)), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckQuota(ctx, "d@x.org", 100); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("check: %v", err)
	}
	if _, err := s.Deliver(ctx, "d@x.org", "", strings.NewReader(strings.Repeat("a", 100)), nil); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("deliver over quota: %v", err)
	}
	u := open(t, s, "d@x.org")
	_, msgs, _ := u.Messages(ctx, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	es, _ := u.root.Scan()
	if len(es) != 1 {
		t.Fatalf("rejected files left on disk: %d", len(es))
	}
}

func TestRebuildAndExternalChanges(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := newStore(t, Config{Dir: dir})
	for i := 0; i < 3; i++ {
		if _, err := s.Deliver(ctx, "e@x.org", "Sent", msg(fmt.Sprint(i)), []string{`\Seen`}); err != nil {
			t.Fatal(err)
		}
	}
	u := open(t, s, "e@x.org")
	old, _ := u.Mailbox(ctx, "Sent")
	u.Create(ctx, "Archive", "")
	u.Release()
	s.Close()

	// Another program (mutt) flags one message, deletes another and delivers a third.
	root := maildir.Dir(filepath.Join(dir, "x.org", "e", "Maildir"))
	sent := maildir.Dir(string(root) + "/.Sent")
	es, _ := sent.Scan()
	if _, err := sent.SetFlags(es[0], "FS"); err != nil {
		t.Fatal(err)
	}
	sent.Remove(es[1])
	if _, err := sent.Deliver(msg("external")); err != nil {
		t.Fatal(err)
	}
	// The index is lost.
	os.Remove(filepath.Join(dir, "x.org", "e", "index.sqlite"))
	os.Remove(filepath.Join(dir, "x.org", "e", "index.sqlite-wal"))
	os.Remove(filepath.Join(dir, "x.org", "e", "index.sqlite-shm"))

	s2 := newStore(t, Config{Dir: dir})
	u2 := open(t, s2, "e@x.org")
	if _, err := u2.Mailbox(ctx, "Archive"); err != nil {
		t.Fatalf("folder not rediscovered: %v", err)
	}
	mb, msgs, err := u2.Messages(ctx, "Sent")
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%d %v", len(msgs), err)
	}
	if mb.UIDValidity == old.UIDValidity {
		t.Fatal("UIDVALIDITY kept across a lost index")
	}
	if strings.Join(msgs[0].Flags, " ") != `\Flagged \Seen` || strings.Join(msgs[1].Flags, " ") != `\Seen` || len(msgs[2].Flags) != 0 {
		t.Fatalf("flags %v %v %v", msgs[0].Flags, msgs[1].Flags, msgs[2].Flags)
	}

	// Changes while the index is live are picked up by the next Sync.
	w := u2.Watch(mb)
	defer w.Close()
	e, _ := sent.Find(msgs[2].Key)
	sent.SetFlags(e, "R")
	e1, _ := sent.Find(msgs[1].Key)
	sent.Remove(e1)
	time.Sleep(10 * time.Millisecond)
	_, msgs2, _ := u2.Messages(ctx, "Sent")
	if len(msgs2) != 2 || strings.Join(msgs2[1].Flags, " ") != `\Answered` {
		t.Fatalf("after external change: %+v", msgs2)
	}
	evs, _ := w.Take()
	if len(evs) != 2 || evs[0].Kind != Expunged || evs[1].Kind != FlagsChanged {
		t.Fatalf("events %+v", evs)
	}
}

func TestConcurrentDelivery(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	var wg sync.WaitGroup
	const workers, each = 4, 15
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.Deliver(ctx, "f@x.org", "", msg("c"), nil); err != nil {
					errs <- err
				}
				if i%5 == 0 {
					u, err := s.Open(ctx, "f@x.org")
					if err == nil {
						u.Messages(ctx, "INBOX") // concurrent syncs
						u.Release()
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	u := open(t, s, "f@x.org")
	mb, msgs, err := u.Messages(ctx, "INBOX")
	if err != nil || len(msgs) != workers*each || mb.UIDNext != workers*each+1 {
		t.Fatalf("%d messages, uidnext %d, %v", len(msgs), mb.UIDNext, err)
	}
	for i, m := range msgs {
		if m.UID != uint32(i+1) {
			t.Fatalf("uid %d at %d", m.UID, i)
		}
	}
}

func TestDeleteRename(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	u := open(t, s, "g@x.org")
	u.Create(ctx, "A/B", "")
	v1, _ := u.Mailbox(ctx, "A")
	if err := u.Rename(ctx, "A", "C"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Mailbox(ctx, "C/B"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(string(u.root), ".C.B")); err != nil {
		t.Fatal(err)
	}
	if err := u.Delete(ctx, "C"); err != nil {
		t.Fatal(err)
	}
	if err := u.Create(ctx, "C", ""); err != nil {
		t.Fatal(err)
	}
	v2, _ := u.Mailbox(ctx, "C")
	if v2.UIDValidity <= v1.UIDValidity {
		t.Fatal("UIDVALIDITY reused")
	}
	if err := u.Delete(ctx, "INBOX"); err == nil {
		t.Fatal("deleted INBOX")
	}
	if err := u.Rename(ctx, "INBOX", "X"); err == nil {
		t.Fatal("renamed INBOX")
	}
}

// Our own changes keep the folder marked as synced (no rescan on the next SELECT); a file
// dropped by another program at the same instant is still found by the periodic full scan.
func TestStampAndPeriodicScan(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	s.Deliver(ctx, "h@x.org", "", msg("1"), nil)
	u := open(t, s, "h@x.org")
	mb, _, _ := u.Messages(ctx, "INBOX") // first full scan
	if _, err := u.Append(ctx, "INBOX", msg("2"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := u.SetFlags(ctx, mb, []uint32{1}, FlagsAdd, []string{FlagSeen}, nil); err != nil {
		t.Fatal(err)
	}
	var stored string
	u.db.QueryRow(`SELECT dir_mtime FROM mailbox WHERE id = ?`, mb.ID).Scan(&stored)
	if stored != dirStamp(u.folder("INBOX")) {
		t.Fatalf("own changes left the folder unsynced: %q vs %q", stored, dirStamp(u.folder("INBOX")))
	}
	// Simulate the race: a foreign file lands and the stamp is (wrongly) marked synced.
	if _, err := u.folder("INBOX").Deliver(msg("foreign")); err != nil {
		t.Fatal(err)
	}
	u.db.Exec(`UPDATE mailbox SET dir_mtime = ? WHERE id = ?`, dirStamp(u.folder("INBOX")), mb.ID)
	_, msgs, _ := u.Messages(ctx, "INBOX")
	if len(msgs) != 2 {
		t.Fatalf("expected the foreign file to wait for the full scan, have %d", len(msgs))
	}
	s.cfg.FullScanInterval = time.Nanosecond
	_, msgs, _ = u.Messages(ctx, "INBOX")
	if len(msgs) != 3 {
		t.Fatalf("full scan did not find the foreign file: %d", len(msgs))
	}
}
