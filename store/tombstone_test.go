package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// Expunged and moved-away UIDs leave tombstones with a modseq above the mailbox's
// HIGHESTMODSEQ before the expunge and at most its value after (RFC 7162 §3.2.5 asks
// "expunged since modseq N"); deleting the mailbox removes them and succeeds.
func TestTombstones(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, Config{})
	u := open(t, s, "alice@example.org")
	for i := 0; i < 4; i++ {
		if _, err := u.Append(ctx, "INBOX", strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.Create(ctx, "Archive", ""); err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if got, complete, err := u.Vanished(ctx, mb, 0); err != nil || len(got) != 0 || !complete {
		t.Fatalf("before any expunge: %v %v", got, err)
	}
	if _, err := u.SetFlags(ctx, mb, []uint32{2}, FlagsAdd, []string{FlagDeleted}, nil); err != nil {
		t.Fatal(err)
	}
	mb, _ = u.Mailbox(ctx, "INBOX")
	before := mb.ModSeq
	if _, err := u.Expunge(ctx, mb, []uint32{2}); err != nil {
		t.Fatal(err)
	}
	mid, _ := u.Mailbox(ctx, "INBOX")
	if _, err := u.Move(ctx, mb, []uint32{3}, "Archive"); err != nil {
		t.Fatal(err)
	}
	after, _ := u.Mailbox(ctx, "INBOX")
	for _, c := range []struct {
		since uint64
		want  []uint32
	}{{before, []uint32{2, 3}}, {mid.ModSeq, []uint32{3}}, {after.ModSeq, nil}} {
		got, complete, err := u.Vanished(ctx, mb, c.since)
		if err != nil || !slices.Equal(got, c.want) || !complete {
			t.Errorf("Vanished(since %d) = %v, %v; want %v (modseqs: before %d, mid %d, after %d)", c.since, got, err, c.want, before, mid.ModSeq, after.ModSeq)
		}
	}
	if err := u.Delete(ctx, "Archive"); err != nil {
		t.Fatalf("delete a mailbox with messages: %v", err)
	}
	var n int
	if err := u.db.QueryRowContext(ctx, `SELECT count(*) FROM tombstone WHERE mailbox_id NOT IN (SELECT id FROM mailbox)`).Scan(&n); err != nil || n != 0 {
		t.Errorf("tombstones of deleted mailboxes: %d %v", n, err)
	}
}

// Tombstones are pruned to the newest ExpungesKept once twice as many were added; the
// modseq of the newest pruned becomes the horizon, below which Vanished says its answer
// is incomplete. One expunge of many messages shares one modseq: pruning takes all of
// them or none.
func TestTombstonesPruned(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, Config{ExpungesKept: 3})
	u := open(t, s, "alice@example.org")
	for range 20 {
		if _, err := u.Append(ctx, "INBOX", strings.NewReader("Subject: x\r\n\r\nbody\r\n"), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := u.Mailbox(ctx, "INBOX")
	start := mb.ModSeq
	after := map[uint32]uint64{} // uid → the mailbox's modseq after its expunge
	for uid := uint32(1); uid <= 6; uid++ {
		if _, err := u.Remove(ctx, mb, []uint32{uid}); err != nil {
			t.Fatal(err)
		}
		m, _ := u.Mailbox(ctx, "INBOX")
		after[uid] = m.ModSeq
	}
	count := func() int {
		var n int
		if err := u.db.QueryRowContext(ctx, `SELECT count(*) FROM tombstone WHERE mailbox_id = ?`, mb.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 3 {
		t.Errorf("%d tombstones after 6 expunges with 3 kept; want 3", n)
	}
	for _, c := range []struct {
		since    uint64
		want     []uint32
		complete bool
	}{
		{start, []uint32{4, 5, 6}, false},
		{after[2], []uint32{4, 5, 6}, false},
		{after[3], []uint32{4, 5, 6}, true},
		{after[5], []uint32{6}, true},
	} {
		got, complete, err := u.Vanished(ctx, mb, c.since)
		if err != nil || !slices.Equal(got, c.want) || complete != c.complete {
			t.Errorf("Vanished(since %d) = %v, %v, %v; want %v, %v", c.since, got, complete, err, c.want, c.complete)
		}
	}
	// 7..14 in one expunge: 3+8 tombstones reach the prune, and the newest 3 share the
	// modseq of the 8: all go.
	if _, err := u.Remove(ctx, mb, []uint32{7, 8, 9, 10, 11, 12, 13, 14}); err != nil {
		t.Fatal(err)
	}
	m, _ := u.Mailbox(ctx, "INBOX")
	if n := count(); n != 0 {
		t.Errorf("%d tombstones after one expunge of 8; want 0", n)
	}
	if got, complete, err := u.Vanished(ctx, mb, m.ModSeq-1); err != nil || len(got) != 0 || complete {
		t.Errorf("Vanished(just before the big expunge) = %v, %v, %v; want none, incomplete", got, complete, err)
	}
	if got, complete, err := u.Vanished(ctx, mb, m.ModSeq); err != nil || len(got) != 0 || !complete {
		t.Errorf("Vanished(now) = %v, %v, %v; want none, complete", got, complete, err)
	}
	// Deleting the mailbox takes its horizon with it.
	if err := u.Create(ctx, "Other", ""); err != nil {
		t.Fatal(err)
	}
	if err := u.Delete(ctx, "INBOX"); err == nil {
		t.Fatal("INBOX deleted")
	}
	other, _ := u.Mailbox(ctx, "Other")
	if _, err := u.Copy(ctx, mb, []uint32{15}, "Other"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Remove(ctx, other, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	if err := u.Delete(ctx, "Other"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := u.db.QueryRowContext(ctx, `SELECT count(*) FROM tombstone_horizon WHERE mailbox_id = ?`, other.ID).Scan(&n); err != nil || n != 0 {
		t.Errorf("horizon rows of a deleted mailbox: %d, %v", n, err)
	}
}
