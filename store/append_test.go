package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupCommitAppends runs many appends of one user at once, into two folders, so that
// they are committed in shared transactions: every caller must get the UID its own message
// has in the index, UIDs are unique and dense per folder, and watchers see every UID once,
// ascending.
func TestGroupCommitAppends(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	u := open(t, s, "g@x.org")
	folders := []string{"INBOX", "Sent"}
	watchers := map[string]*Watcher{}
	for _, f := range folders {
		mb, err := u.Mailbox(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		watchers[f] = u.Watch(mb)
		defer watchers[f].Close()
	}
	const workers, each = 16, 10
	type got struct {
		folder, subject string
		uid             uint32
	}
	results := make(chan got, workers*each)
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				f := folders[(w+i)%2]
				subj := fmt.Sprintf("w%d-%d", w, i)
				var flags []string
				if i%3 == 0 {
					flags = []string{FlagSeen, "$label"}
				}
				res, err := u.Append(ctx, f, msg(subj), flags, time.Time{})
				if err != nil {
					errs <- err
					continue
				}
				results <- got{f, subj, res.UID}
			}
		}()
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	byFolder := map[string]map[uint32]string{}
	for r := range results {
		if byFolder[r.folder] == nil {
			byFolder[r.folder] = map[uint32]string{}
		}
		if prev, dup := byFolder[r.folder][r.uid]; dup {
			t.Fatalf("uid %d of %s given to %s and %s", r.uid, r.folder, prev, r.subject)
		}
		byFolder[r.folder][r.uid] = r.subject
	}
	total := 0
	for _, f := range folders {
		mb, msgs, err := u.Messages(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != len(byFolder[f]) || mb.UIDNext != uint32(len(msgs))+1 {
			t.Fatalf("%s: %d messages, %d appended, uidnext %d", f, len(msgs), len(byFolder[f]), mb.UIDNext)
		}
		for i, m := range msgs {
			if m.UID != uint32(i+1) {
				t.Fatalf("%s: uid %d at %d", f, m.UID, i)
			}
			fh, err := u.Open(mb, m)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(fh)
			fh.Close()
			if want := "Subject: " + byFolder[f][m.UID] + "\r\n"; !strings.Contains(string(b), want) {
				t.Fatalf("%s uid %d: file %q, caller was told %q", f, m.UID, b, byFolder[f][m.UID])
			}
			if strings.Contains(m.File, ":2,") != hasFlag(m.Flags, FlagSeen) {
				t.Fatalf("%s uid %d: file %s, flags %v", f, m.UID, m.File, m.Flags)
			}
		}
		evs, overflowed := watchers[f].Take()
		var seen []uint32
		for _, ev := range evs {
			if ev.Kind != Appended {
				t.Fatalf("%s: event %v", f, ev.Kind)
			}
			seen = append(seen, ev.UIDs...)
		}
		if overflowed || len(seen) != len(msgs) {
			t.Fatalf("%s: watcher saw %d UIDs of %d", f, len(seen), len(msgs))
		}
		for i, uid := range seen {
			if uid != uint32(i+1) {
				t.Fatalf("%s: event order %v", f, seen)
			}
		}
		total += len(msgs)
	}
	if total != workers*each {
		t.Fatalf("%d messages of %d", total, workers*each)
	}
}

// TestGroupCommitQuota checks the quota within a batch: concurrent deliveries that fit
// together are all kept, the rest are refused and leave no file.
func TestGroupCommitQuota(t *testing.T) {
	s := newStore(t, Config{Quota: 1000})
	ctx := context.Background()
	body := strings.Repeat("q", 100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, over := 0, 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Deliver(ctx, "q@x.org", "", strings.NewReader(body), nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrOverQuota):
				over++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 || over != 10 {
		t.Fatalf("%d kept, %d over quota; want 10 and 10", ok, over)
	}
	u := open(t, s, "q@x.org")
	if used, _ := u.Usage(ctx); used != 1000 {
		t.Fatalf("usage %d", used)
	}
	es, _ := u.root.Scan()
	if len(es) != 10 {
		t.Fatalf("%d files on disk", len(es))
	}
}

// TestAppendIntoDeletedFolder: a folder deleted between Append's lookup and its commit
// gives ErrNoMailbox (Deliver then falls back to INBOX), never a half-indexed message.
func TestAppendIntoDeletedFolder(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	u := open(t, s, "h@x.org")
	if err := u.Create(ctx, "Lists", ""); err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox(ctx, "Lists")
	// Queue a request as Append does after writing its file, then delete the folder.
	req := &appendReq{mbID: mb.ID, d: u.folder("Lists"), key: "1.M1P1Q1.test", file: "new/1.M1P1Q1.test", path: "/nonexistent", date: time.Now()}
	if err := u.Delete(ctx, "Lists"); err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	u.commitAppends([]*appendReq{req})
	u.mu.Unlock()
	if !errors.Is(req.err, ErrNoMailbox) || !req.done {
		t.Fatalf("append into deleted folder: %v", req.err)
	}
	if _, err := s.Deliver(ctx, "h@x.org", "Lists", msg("fallback"), nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := u.Status(ctx, "INBOX"); st.Messages != 1 {
		t.Fatalf("INBOX has %d", st.Messages)
	}
}

// TestMessagesByUIDSparse reads sparse UID sets (the padded IN lists) and removes some.
func TestMessagesByUIDSparse(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	u := open(t, s, "sparse@x.org")
	for i := range 300 {
		if _, err := u.Append(ctx, "INBOX", msg(fmt.Sprint(i)), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := u.Mailbox(ctx, "INBOX")
	for _, want := range [][]uint32{{1, 300}, {2, 100, 299}, {5, 6, 7, 250, 251, 290, 299}, {1, 3, 5, 7, 9, 299, 999}} {
		got, err := u.MessagesByUID(ctx, mb, want)
		if err != nil {
			t.Fatal(err)
		}
		var uids []uint32
		for _, m := range got {
			uids = append(uids, m.UID)
		}
		exp := want
		if want[len(want)-1] == 999 {
			exp = want[:len(want)-1]
		}
		if fmt.Sprint(uids) != fmt.Sprint(exp) {
			t.Fatalf("MessagesByUID(%v) = %v", want, uids)
		}
	}
	gone, err := u.Remove(ctx, mb, []uint32{2, 100, 299})
	if err != nil || len(gone) != 3 {
		t.Fatalf("remove: %v %v", gone, err)
	}
	if st, _ := u.Status(ctx, "INBOX"); st.Messages != 297 {
		t.Fatalf("%d messages left", st.Messages)
	}
	for _, n := range []int{1, 2, 3, 5, 300, 512} {
		uids := make([]uint32, n)
		for i := range uids {
			uids[i] = uint32(i + 1)
		}
		in, args := inList(uids)
		if p := strings.Count(in, "?"); p&(p-1) != 0 || p < n || len(args) != p+1 || args[p] != uids[n-1] {
			t.Fatalf("inList(%d): %d placeholders, %d args", n, p, len(args))
		}
	}
}

// TestAppendAfterDeleteRecreateRename: the remembered folder ids follow deletes,
// re-creates and renames.
func TestAppendAfterDeleteRecreateRename(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	u := open(t, s, "r@x.org")
	appendTo := func(name string) error {
		_, err := u.Append(ctx, name, msg(name), nil, time.Time{})
		return err
	}
	if err := u.Create(ctx, "A", ""); err != nil {
		t.Fatal(err)
	}
	if err := appendTo("A"); err != nil {
		t.Fatal(err)
	}
	if err := u.Delete(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	if err := appendTo("A"); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("append to a deleted folder: %v", err)
	}
	if err := u.Create(ctx, "A", ""); err != nil {
		t.Fatal(err)
	}
	if err := appendTo("A"); err != nil {
		t.Fatalf("append to the re-created folder: %v", err)
	}
	if err := u.Rename(ctx, "A", "B"); err != nil {
		t.Fatal(err)
	}
	if err := appendTo("A"); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("append to a renamed-away folder: %v", err)
	}
	if err := appendTo("B"); err != nil {
		t.Fatal(err)
	}
	if st, _ := u.Status(ctx, "B"); st.Messages != 2 {
		t.Fatalf("B has %d messages, want 2", st.Messages)
	}
}

// A Sync while an APPEND waits for its commit leaves the APPEND's file to it: a row made
// by the Sync could be expunged by another session before the commit, which then indexed
// a message without a file.
func TestSyncLeavesPendingAppends(t *testing.T) {
	s := newStore(t, Config{FullScanInterval: time.Nanosecond})
	ctx := context.Background()
	u := open(t, s, "p@x.org")
	// The file is in the folder, its request not queued yet (Append waits for the
	// directory's fsync in between).
	req, err := u.prepareAppend(ctx, "INBOX", msg("pending"), []string{FlagDraft}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Sync(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if _, ms, err := u.Messages(ctx, "INBOX"); err != nil || len(ms) != 0 {
		t.Fatalf("Sync indexed a pending append's file: %v %v", ms, err)
	}
	u.amu.Lock()
	u.appendQ = append(u.appendQ, req)
	u.amu.Unlock()
	if err := u.Sync(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if _, ms, err := u.Messages(ctx, "INBOX"); err != nil || len(ms) != 0 {
		t.Fatalf("Sync indexed a pending append's file: %v %v", ms, err)
	}
	u.mu.Lock()
	u.amu.Lock()
	batch := u.appendQ
	u.appendQ = nil
	u.amu.Unlock()
	u.commitAppends(batch)
	u.mu.Unlock()
	if req.err != nil || req.already || req.res.UID != 1 {
		t.Fatalf("commit after the Sync: %+v, %v", req.res, req.err)
	}
	if _, ms, err := u.Messages(ctx, "INBOX"); err != nil || len(ms) != 1 || !hasFlag(ms[0].Flags, FlagDraft) {
		t.Fatalf("after the commit: %v %v", ms, err)
	}
	if n := len(u.pendingAppends(1)) + len(u.appending); n != 0 {
		t.Errorf("%d keys still pending after the commit", n)
	}
}
