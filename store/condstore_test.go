package store

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// A conditional STORE (RFC 7162 §3.1.3) leaves the messages changed since its modseq
// alone and names them; UNCHANGEDSINCE 0 fails for every message (each has a modseq).
func TestSetFlagsUnchangedSince(t *testing.T) {
	ctx := context.Background()
	u := open(t, newStore(t, Config{}), "alice@example.org")
	for _, s := range []string{"a", "b", "c"} {
		if _, err := u.Append(ctx, "INBOX", msg(s), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := u.Mailbox(ctx, "INBOX")
	base := mb.ModSeq
	if _, err := u.SetFlags(ctx, mb, []uint32{2}, FlagsAdd, []string{FlagFlagged}, nil); err != nil {
		t.Fatal(err)
	}
	changed, modified, err := u.SetFlagsUnchangedSince(ctx, mb, []uint32{1, 2, 3}, FlagsAdd, []string{FlagSeen}, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(modified, []uint32{2}) || len(changed) != 2 || changed[0].UID != 1 || changed[1].UID != 3 {
		t.Fatalf("changed %v modified %v; want 1 and 3 changed, 2 modified", changed, modified)
	}
	msgs, _ := u.MessagesByUID(ctx, mb, []uint32{2})
	if hasFlag(msgs[0].Flags, FlagSeen) {
		t.Errorf("message 2 was changed: %v", msgs[0].Flags)
	}
	if _, modified, err := u.SetFlagsUnchangedSince(ctx, mb, []uint32{1, 3}, FlagsAdd, []string{"$x"}, 0, nil); err != nil || !slices.Equal(modified, []uint32{1, 3}) {
		t.Errorf("UNCHANGEDSINCE 0: modified %v, %v; want 1 and 3", modified, err)
	}
}

// Two writers that share nothing but the index file (two Stores, as two processes would)
// race conditional STOREs with the same UNCHANGEDSINCE on one message: in each round
// exactly one changes it and the other is told it was modified, because the test and
// the change are one SQLite write transaction. A check-then-set lets both through.
func TestSetFlagsUnchangedSinceRace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := open(t, newStore(t, Config{Dir: dir}), "alice@example.org")
	b := open(t, newStore(t, Config{Dir: dir}), "alice@example.org")
	if _, err := a.Append(ctx, "INBOX", msg("x"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for round := range 30 {
		mb, err := a.Mailbox(ctx, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := a.MessagesByUID(ctx, mb, []uint32{1})
		if err != nil || len(msgs) != 1 {
			t.Fatal(msgs, err)
		}
		since := msgs[0].ModSeq
		var wg sync.WaitGroup
		var won, lost [2]int
		var errs [2]error
		start := make(chan struct{})
		for i, u := range []*User{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Replace, so that each round changes the flags whoever wins.
				flags := []string{"$round" + string(rune('a'+round%26)) + string(rune('a'+i))}
				changed, modified, err := u.SetFlagsUnchangedSince(ctx, mb, []uint32{1}, FlagsReplace, flags, since, nil)
				won[i], lost[i], errs[i] = len(changed), len(modified), err
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won[0]+won[1] != 1 || lost[0]+lost[1] != 1 {
			t.Fatalf("round %d: changed %v, modified %v; want exactly one winner and one MODIFIED", round, won, lost)
		}
	}
}
