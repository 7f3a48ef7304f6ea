package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// recordingEvicter stands in for the IMAP server's session registry (imapd's own test
// checks Evict on real sessions): it records the cut asked for each user.
type recordingEvicter struct {
	users []string
	cuts  map[string]time.Time
}

func (r *recordingEvicter) LoggedIn() []string { return r.users }

func (r *recordingEvicter) Evict(user string, before time.Time, _ string) int {
	r.cuts[user] = before
	return 1
}

// TestTenancyCuts checks which sessions the old back-end closes, against the directory
// in a real PostgreSQL: none of a user living here or unknown to the directory; for a
// user moving, those opened before the move began plus the cache TTL; after the flip,
// still that cut (the move's own later sessions stay); for a host change without a move,
// a cut at the change; every server of the node (IMAP, POP3, ManageSieve) is asked.
func TestTenancyCuts(t *testing.T) {
	ctx := context.Background()
	pg, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(t, pgtest.Start(t)))
	require.NoError(t, err)
	defer pg.Close()
	for _, u := range []directory.User{
		{Address: "here@example.test", MailHost: "store1"},
		{Address: "mover@example.test", MailHost: "store1"},
		{Address: "hopper@example.test", MailHost: "store1"},
	} {
		require.NoError(t, pg.Put(ctx, u))
	}
	ev := &recordingEvicter{users: []string{"here@example.test", "mover@example.test", "hopper@example.test", "postmaster@example.test"}, cuts: map[string]time.Time{}}
	const ttl = 2 * time.Second
	// A second server (POP3, say) with a session of the user who moves: each server a
	// user is logged in to has the same cut asked.
	pop := &recordingEvicter{users: []string{"mover@example.test"}, cuts: map[string]time.Time{}}
	tn := &tenancy{dir: pg, this: "store1", ttl: ttl, srv: evicters{ev, pop}, log: slog.New(slog.DiscardHandler), now: time.Now, firstSeen: map[string]time.Time{}}

	tn.check(ctx)
	require.Empty(t, ev.cuts, "users living here, and the local postmaster, keep their sessions")

	require.NoError(t, pg.SetState(ctx, "mover@example.test", directory.StateMoving))
	moving, err := pg.Lookup(ctx, "mover@example.test")
	require.NoError(t, err)
	tn.check(ctx)
	require.Equal(t, map[string]time.Time{"mover@example.test": moving.Moved.Add(ttl)}, ev.cuts)
	require.Equal(t, ev.cuts, pop.cuts)

	require.NoError(t, pg.SetMailHost(ctx, "mover@example.test", "store2"))
	require.NoError(t, pg.SetMailHost(ctx, "hopper@example.test", "store2"))
	hopper, err := pg.Lookup(ctx, "hopper@example.test")
	require.NoError(t, err)
	clear(ev.cuts)
	tn.check(ctx)
	require.Equal(t, moving.Moved.Add(ttl), ev.cuts["mover@example.test"], "the flip must not close the move's own sessions")
	require.Equal(t, hopper.Moved.Add(ttl), ev.cuts["hopper@example.test"])
	require.True(t, hopper.Moved.After(moving.Moved))
	require.NotContains(t, ev.cuts, "here@example.test")
}
