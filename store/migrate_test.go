package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMigrationHelpers: a never used folder takes the source's UIDVALIDITY, prepared
// messages get UIDs in commit order and at least their wanted UID, UIDLs are kept and go
// with their message, and an uncommitted prepared file is indexed by the next Sync.
func TestMigrationHelpers(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, Config{})
	u := open(t, s, "alice@example.org")
	if err := u.Create(ctx, "Old", ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := u.KeepUIDs(ctx, "Old", 1234567); !ok || err != nil {
		t.Fatalf("KeepUIDs on a new folder: %v %v", ok, err)
	}
	var ps []*Prepared
	for i, want := range []uint32{3, 0, 9} {
		p, err := u.Prepare(ctx, "Old", strings.NewReader("Subject: "+string(rune('a'+i))+"\r\n\r\nx\r\n"), []string{`\Seen`, "Kw"}, time.Unix(1e9, 0), want)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	res, errs := u.CommitPrepared(ctx, ps)
	for i, e := range errs {
		if e != nil {
			t.Fatalf("commit %d: %v", i, e)
		}
	}
	if res[0].UID != 3 || res[1].UID != 4 || res[2].UID != 9 || res[0].UIDValidity != 1234567 {
		t.Fatalf("results %+v", res)
	}
	if ok, _ := u.KeepUIDs(ctx, "Old", 7654321); ok {
		t.Fatal("KeepUIDs changed a folder that holds messages")
	}
	mb, _ := u.Mailbox(ctx, "Old")
	if err := u.SetUIDLs(ctx, mb, map[uint32]string{3: "uidl-3", 9: "uidl-9", 77: "none"}); err != nil {
		t.Fatal(err)
	}
	if err := u.SetUIDL(ctx, mb, 4, "bad uidl"); err == nil {
		t.Fatal("an invalid UIDL was accepted")
	}
	if err := u.SetInternalDate(ctx, mb, 4, time.Unix(2e9, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Remove(ctx, mb, []uint32{9}); err != nil {
		t.Fatal(err)
	}
	uidls, _ := u.UIDLs(ctx, mb)
	if len(uidls) != 1 || uidls[3] != "uidl-3" {
		t.Fatalf("uidls %v", uidls)
	}
	// A prepared message never committed (the process died) shows up at the next sync.
	if _, err := u.Prepare(ctx, "Old", strings.NewReader("Subject: orphan\r\n\r\n"), nil, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	_, ms, err := u.Messages(ctx, "Old")
	if err != nil || len(ms) != 3 || !ms[1].InternalDate.Equal(time.Unix(2e9, 0)) {
		t.Fatalf("messages %+v %v", ms, err)
	}
}
