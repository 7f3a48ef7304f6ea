package main

import (
	"context"
	"fmt"
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
	require.Len(t, ev.cuts, 1)
	require.WithinDuration(t, moving.Moved.Add(ttl), ev.cuts["mover@example.test"], time.Second)
	require.Equal(t, ev.cuts, pop.cuts)
	firstCut := ev.cuts["mover@example.test"]

	require.NoError(t, pg.SetMailHost(ctx, "mover@example.test", "store2"))
	require.NoError(t, pg.SetMailHost(ctx, "hopper@example.test", "store2"))
	hopper, err := pg.Lookup(ctx, "hopper@example.test")
	require.NoError(t, err)
	clear(ev.cuts)
	tn.check(ctx)
	require.WithinDuration(t, firstCut, ev.cuts["mover@example.test"], 100*time.Millisecond, "the flip must not close the move's own sessions")
	require.WithinDuration(t, hopper.Moved.Add(ttl), ev.cuts["hopper@example.test"], time.Second)
	require.True(t, hopper.Moved.After(moving.Moved))
	require.NotContains(t, ev.cuts, "here@example.test")
}

// sessionsEvicter holds login times, in the node's clock, and closes those before the
// cut as loggedin.Registry does.
type sessionsEvicter struct{ at map[string][]time.Time }

func (s *sessionsEvicter) LoggedIn() []string {
	var out []string
	for u, at := range s.at {
		if len(at) > 0 {
			out = append(out, u)
		}
	}
	return out
}

func (s *sessionsEvicter) Evict(user string, before time.Time, _ string) int {
	kept := s.at[user][:0]
	for _, at := range s.at[user] {
		if !at.Before(before) {
			kept = append(kept, at)
		}
	}
	n := len(s.at[user]) - len(kept)
	s.at[user] = kept
	return n
}

// TestTenancyClockSkew: a back-end whose clock is 10 s behind PostgreSQL's (more than
// the cache TTL plus a second) keeps the move's own session, opened after the settle,
// and one 10 s ahead still closes the session opened before the move: the cut is the
// directory's moved in this node's clock, not PostgreSQL's timestamp compared with it.
func TestTenancyClockSkew(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	const ttl = 300 * time.Millisecond
	for _, skew := range []time.Duration{-10 * time.Second, 10 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			now := func() time.Time { return time.Now().Add(skew) } // this back-end's clock
			pg, err := directory.OpenPostgres(ctx, dsn)
			require.NoError(t, err)
			defer pg.Close()
			pg.SetClock(now)
			user := fmt.Sprintf("skew%d@example.test", skew/time.Second)
			require.NoError(t, pg.Put(ctx, directory.User{Address: user, MailHost: "store1"}))
			ev := &sessionsEvicter{at: map[string][]time.Time{user: {now()}}} // the user's client
			tn := &tenancy{dir: pg, this: "store1", ttl: ttl, srv: ev, log: slog.New(slog.DiscardHandler), now: now, firstSeen: map[string]time.Time{}}
			time.Sleep(50 * time.Millisecond)

			require.NoError(t, pg.SetState(ctx, user, directory.StateMoving))
			time.Sleep(2*ttl + 100*time.Millisecond) // the move's --settle, shortened
			move := now()
			ev.at[user] = append(ev.at[user], move) // the move's own session
			tn.check(ctx)
			require.Equal(t, []time.Time{move}, ev.at[user], "the client's session must be closed, the move's kept")
		})
	}
}
