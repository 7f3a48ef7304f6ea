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
	if got, err := u.Vanished(ctx, mb, 0); err != nil || len(got) != 0 {
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
		got, err := u.Vanished(ctx, mb, c.since)
		if err != nil || !slices.Equal(got, c.want) {
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
