package store

import (
	"context"
	"slices"
	"testing"
)

// An index from before the subscription table keeps its subscriptions: the migration
// copies mailbox.subscribed once, and running it again (every open) changes nothing.
func TestSubscriptionsMigration(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, Config{})
	u := open(t, s, "alice@example.org")
	for _, n := range []string{"a", "b"} {
		if err := u.Create(ctx, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	// The old layout: the flag in the folder's row (a subscribed, b not), no table rows.
	for _, q := range []string{
		`UPDATE mailbox SET subscribed = (name <> 'b')`,
		`DELETE FROM subscription`,
		`DELETE FROM meta WHERE k = 'subscriptions'`,
	} {
		if _, err := u.db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := u.db.ExecContext(ctx, subscriptionsMigration); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := u.SetSubscribed(ctx, "a", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := u.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The default folders were subscribed in the old column too; a was unsubscribed
	// after the first run, and the second run did not bring it back.
	if !slices.Contains(got, Inbox) || slices.Contains(got, "a") || slices.Contains(got, "b") {
		t.Fatalf("subscriptions %q, want INBOX and not a or b", got)
	}
	// DELETE keeps the subscription of a folder; Mailbox reports it.
	if err := u.SetSubscribed(ctx, "b", true); err != nil {
		t.Fatal(err)
	}
	if mb, err := u.Mailbox(ctx, "b"); err != nil || !mb.Subscribed {
		t.Fatalf("b: %+v %v", mb, err)
	}
	if err := u.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := u.Subscriptions(ctx); !slices.Contains(got, "b") {
		t.Fatalf("after DELETE: %q", got)
	}
}
