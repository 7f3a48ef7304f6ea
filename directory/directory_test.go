package directory_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/auth/ldaptest"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// TestPostgres runs the PostgreSQL tests on one server, a fresh database each.
func TestPostgres(t *testing.T) {
	server := pgtest.Start(t)
	t.Run("crud", func(t *testing.T) { testPostgresCRUD(t, server) })
	t.Run("concurrent-open", func(t *testing.T) { testPostgresConcurrentOpen(t, server) })
	t.Run("cache", func(t *testing.T) { testCache(t, server) })
	t.Run("hashes", func(t *testing.T) { testHashes(t, server) })
	t.Run("admin", func(t *testing.T) { testPostgresAdmin(t, server) })
}

// testPostgresAdmin is what portcullis user does to the shared directory: add, aliases
// (found by Lookup, unique across users and aliases), password, quota, list.
func testPostgresAdmin(t *testing.T, server string) {
	ctx := context.Background()
	p := postgres(t, server)
	if err := p.Add(ctx, directory.User{Address: "Kim@Example.test", PasswordHash: "h1", MailHost: "store1"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(ctx, directory.User{Address: "kim@example.test"}); !errors.Is(err, directory.ErrExists) {
		t.Fatalf("second add: %v, want ErrExists", err)
	}
	if err := p.Add(ctx, directory.User{Address: "lee@example.test", MailHost: "store2"}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddAlias(ctx, "kim@example.test", "K.Im@example.test"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ user, alias string }{
		{"lee@example.test", "k.im@example.test"}, // another's alias
		{"lee@example.test", "kim@example.test"},  // a user
	} {
		if err := p.AddAlias(ctx, c.user, c.alias); !errors.Is(err, directory.ErrExists) {
			t.Fatalf("alias %s of %s: %v, want ErrExists", c.alias, c.user, err)
		}
	}
	if err := p.AddAlias(ctx, "nobody@example.test", "x@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("alias of no user: %v", err)
	}
	if err := p.Add(ctx, directory.User{Address: "k.im@example.test"}); !errors.Is(err, directory.ErrExists) {
		t.Fatalf("a user named like an alias: %v, want ErrExists", err)
	}
	// Lookup by the alias finds the user, under the user's own address.
	got, err := p.Lookup(ctx, "k.im@example.test")
	if err != nil || got.Address != "kim@example.test" || got.MailHost != "store1" || !slices.Equal(got.Aliases, []string{"k.im@example.test"}) {
		t.Fatalf("lookup by alias = %+v, %v", got, err)
	}
	if err := p.SetPasswordHash(ctx, "kim@example.test", "h2"); err != nil {
		t.Fatal(err)
	}
	if err := p.SetQuota(ctx, "kim@example.test", 5<<20); err != nil {
		t.Fatal(err)
	}
	if err := p.SetQuota(ctx, "nobody@example.test", 1); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("quota of no user: %v", err)
	}
	list, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Address != "kim@example.test" || list[0].PasswordHash != "h2" || list[0].Quota != 5<<20 ||
		!slices.Equal(list[0].Aliases, []string{"k.im@example.test"}) || list[0].Changed.IsZero() ||
		list[1].Address != "lee@example.test" || list[1].MailHost != "store2" || list[1].Aliases != nil {
		t.Fatalf("List = %+v", list)
	}
	if err := p.DeleteAlias(ctx, "k.im@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteAlias(ctx, "k.im@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("second alias delete: %v", err)
	}
	if _, err := p.Lookup(ctx, "k.im@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("deleted alias still found: %v", err)
	}
}

// testHashes verifies passwords against the hashes in PostgreSQL through auth.
func testHashes(t *testing.T, server string) {
	ctx := context.Background()
	p := postgres(t, server)
	h, err := auth.HashPassword("s3cret pass", auth.DefaultArgon2Params)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Put(ctx, directory.User{Address: "kim@example.test", PasswordHash: h, MailHost: "store1"}); err != nil {
		t.Fatal(err)
	}
	db, err := auth.OpenDB(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := db.WithHashes(directory.Hashes(p))
	if name, err := a.Authenticate(ctx, "Kim@example.test", "s3cret pass", netip.Addr{}); err != nil || name != "kim@example.test" {
		t.Fatalf("right password: %q %v", name, err)
	}
	if _, err := a.Authenticate(ctx, "kim@example.test", "wrong", netip.Addr{}); !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := a.Authenticate(ctx, "nobody@example.test", "s3cret pass", netip.Addr{}); !errors.Is(err, auth.ErrUnknownUser) {
		t.Fatalf("unknown user: %v", err)
	}
	down := db.WithHashes(directory.Hashes(&flaky{err: errors.New("connection refused")}))
	if _, err := down.Authenticate(ctx, "kim@example.test", "s3cret pass", netip.Addr{}); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("directory down: %v, want ErrUnavailable", err)
	}
}

// postgres returns a directory in a fresh database on server.
func postgres(t testing.TB, server string) *directory.Postgres {
	t.Helper()
	p, err := directory.OpenPostgres(context.Background(), pgtest.NewDatabase(t, server))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testPostgresCRUD(t *testing.T, server string) {
	ctx := context.Background()
	p := postgres(t, server)
	want := directory.User{Address: "Alice@Example.TEST", PasswordHash: "$argon2id$x", Quota: 1 << 30,
		MailHost: "store1", Aliases: []string{"a.lice@example.test", "postmaster@example.test"}}
	if err := p.Put(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := p.Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	want.Address = "alice@example.test"
	if got.Address != want.Address || got.PasswordHash != want.PasswordHash || got.Quota != want.Quota ||
		got.MailHost != "store1" || got.State != "" || !slices.Equal(got.Aliases, want.Aliases) {
		t.Fatalf("Lookup = %+v, want %+v", got, want)
	}
	if _, err := p.Lookup(ctx, "nobody@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("unknown user: %v, want ErrNotFound", err)
	}
	if _, err := p.Lookup(ctx, "not an address"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("bad address: %v, want ErrNotFound", err)
	}
	if err := p.SetState(ctx, "alice@example.test", directory.StateMoving); err != nil {
		t.Fatal(err)
	}
	moving, _ := p.Lookup(ctx, "alice@example.test")
	if moving.State != directory.StateMoving || moving.Moved.IsZero() {
		t.Fatalf("moving: %+v", moving)
	}
	if err := p.SetMailHost(ctx, "alice@example.test", "store2"); err != nil {
		t.Fatal(err)
	}
	// The flip at the end of a move keeps the time the move began.
	if got, _ := p.Lookup(ctx, "alice@example.test"); got.MailHost != "store2" || got.State != "" || !got.Moved.Equal(moving.Moved) {
		t.Fatalf("after the flip: %+v, moving since %v", got, moving.Moved)
	}
	// A host change without a move is a move of its own.
	if err := p.SetMailHost(ctx, "alice@example.test", "store3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.Lookup(ctx, "alice@example.test"); !got.Moved.After(moving.Moved) {
		t.Fatalf("host change: moved %v, not after %v", got.Moved, moving.Moved)
	}
	// An alias that belongs to someone else is refused, and the transaction leaves the
	// user as it was.
	if err := p.Put(ctx, directory.User{Address: "bob@example.test", Aliases: []string{"postmaster@example.test"}}); err == nil {
		t.Fatal("a second owner of an alias was accepted")
	}
	if _, err := p.Lookup(ctx, "bob@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("failed Put left a user: %v", err)
	}
	if err := p.Delete(ctx, "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, "alice@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := p.Put(ctx, directory.User{Address: "bob@example.test", Aliases: []string{"postmaster@example.test"}}); err != nil {
		t.Fatalf("alias freed by the delete: %v", err)
	}
}

// TestPostgresConcurrentOpen opens the same database from several pools at once, as
// nodes starting together do: the schema creation must not fail on the catalog.
func testPostgresConcurrentOpen(t *testing.T, server string) {
	dsn := pgtest.NewDatabase(t, server)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			p, err := directory.OpenPostgres(context.Background(), dsn)
			if err == nil {
				p.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestPostgresUnavailable(t *testing.T) {
	p, err := directory.OpenPostgres(context.Background(), "postgres://x@127.0.0.1:1/db?sslmode=disable&connect_timeout=1")
	if err == nil {
		p.Close()
		t.Fatal("opened a directory on a closed port")
	}
}

// TestCache shows that a change is seen within the TTL, not before it is due, and that
// errors are not remembered.
func testCache(t *testing.T, server string) {
	ctx := context.Background()
	p := postgres(t, server)
	if err := p.Put(ctx, directory.User{Address: "carol@example.test", MailHost: "store1"}); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	c := directory.NewCache(p, 5*time.Second, 0)
	directory.SetCacheClock(c, func() time.Time { return now })
	lookupHost := func(addr string) string {
		t.Helper()
		u, err := c.Lookup(ctx, addr)
		if errors.Is(err, directory.ErrNotFound) {
			return "(none)"
		}
		if err != nil {
			t.Fatal(err)
		}
		return u.MailHost
	}
	if h := lookupHost("carol@example.test"); h != "store1" {
		t.Fatalf("host %q", h)
	}
	if h := lookupHost("dave@example.test"); h != "(none)" {
		t.Fatalf("unknown user: %q", h)
	}
	if err := p.SetMailHost(ctx, "carol@example.test", "store2"); err != nil {
		t.Fatal(err)
	}
	if err := p.Put(ctx, directory.User{Address: "dave@example.test", MailHost: "store3"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(4 * time.Second)
	if h := lookupHost("carol@example.test"); h != "store1" {
		t.Fatalf("within the TTL: %q (the cache was not used)", h)
	}
	now = now.Add(1 * time.Second)
	if h := lookupHost("CAROL@example.test"); h != "store2" {
		t.Fatalf("after the TTL: %q, want the change", h)
	}
	if h := lookupHost("dave@example.test"); h != "store3" {
		t.Fatalf("a negative answer outlived the TTL: %q", h)
	}
}

func TestCacheErrorsNotKept(t *testing.T) {
	d := &flaky{err: errors.New("down")}
	c := directory.NewCache(d, time.Hour, 2)
	if _, err := c.Lookup(context.Background(), "a@example.test"); err == nil || errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	d.err = nil
	if u, err := c.Lookup(context.Background(), "a@example.test"); err != nil || u.MailHost != "h" {
		t.Fatalf("after recovery: %+v %v", u, err)
	}
	// The bound holds: more addresses than entries still answer.
	for _, a := range []string{"b@example.test", "c@example.test", "d@example.test"} {
		if _, err := c.Lookup(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	if n := directory.CacheLen(c); n > 2 {
		t.Fatalf("cache holds %d entries, bound 2", n)
	}
}

// flaky is a directory that fails until err is cleared; it stands in for an outage,
// which the real peers cannot be told to have on one call.
type flaky struct{ err error }

func (f *flaky) Lookup(_ context.Context, addr string) (directory.User, error) {
	if f.err != nil {
		return directory.User{}, f.err
	}
	return directory.User{Address: addr, MailHost: "h"}, nil
}

func TestLocal(t *testing.T) {
	ctx := context.Background()
	db, err := auth.OpenDB(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Add(ctx, "erin@example.test", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	d, closer, err := directory.Open(ctx, directory.Config{}, directory.Deps{Users: db, Quota: 5 << 20,
		Aliases: func(_ context.Context, u string) ([]string, error) {
			return []string{u, "info@example.test"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	u, err := d.Lookup(ctx, "Erin@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if u.Address != "erin@example.test" || u.MailHost != directory.HostHere || u.Quota != 5<<20 || !slices.Equal(u.Aliases, []string{"info@example.test"}) {
		t.Fatalf("local user: %+v", u)
	}
	if ok, _, err := auth.VerifyPassword(u.PasswordHash, "correct horse battery", auth.DefaultArgon2Params); err != nil || !ok {
		t.Fatalf("the hash does not verify the password: %v", err)
	}
	if _, err := d.Lookup(ctx, "frank@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestLDAP(t *testing.T) {
	ctx := context.Background()
	srv := ldaptest.Start(t,
		ldaptest.User{UID: "gina", Mail: "Gina@example.test", Password: "pw", MailHost: "store2",
			MailAliases: []string{"sales@example.test", "g@example.test"}},
		ldaptest.User{UID: "hank", Mail: "hank@example.test", Password: "pw"},
	)
	conn, err := auth.NewLDAP(auth.LDAPConfig{URL: srv.URL, BaseDN: ldaptest.BaseDN, BindDN: srv.BindDN, BindPassword: srv.BindPassword}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d, closer, err := directory.Open(ctx, directory.Config{LDAP: &directory.LDAPConfig{}}, directory.Deps{LDAP: conn})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	u, err := d.Lookup(ctx, "gina@example.test")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(u.Aliases)
	if u.Address != "gina@example.test" || u.MailHost != "store2" || u.PasswordHash != "" || !slices.Equal(u.Aliases, []string{"g@example.test", "sales@example.test"}) {
		t.Fatalf("ldap user: %+v", u)
	}
	if u, err := d.Lookup(ctx, "hank@example.test"); err != nil || u.MailHost != directory.HostHere {
		t.Fatalf("entry without mailHost: %+v %v", u, err)
	}
	if _, err := d.Lookup(ctx, "ivan@example.test"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	srv.Stop()
	if _, err := d.Lookup(ctx, "zed@example.test"); err == nil || errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("directory down: %v, want an error that is not ErrNotFound", err)
	}
}

func TestOpenBoth(t *testing.T) {
	if _, _, err := directory.Open(context.Background(), directory.Config{Postgres: "postgres://x", LDAP: &directory.LDAPConfig{}}, directory.Deps{}); err == nil {
		t.Fatal("postgres and ldap together were accepted")
	}
}

// TestMovedLocal: User.MovedLocal is moved in the reader's clock, whatever its skew from
// PostgreSQL's (here an hour ahead), while Moved stays PostgreSQL's; a user never moved
// has neither.
func TestMovedLocal(t *testing.T) {
	ctx := context.Background()
	p, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(t, pgtest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	for _, a := range []string{"mover@example.org", "stay@example.org"} {
		if err := p.Put(ctx, directory.User{Address: a, MailHost: "store1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SetState(ctx, "mover@example.org", directory.StateMoving); err != nil {
		t.Fatal(err)
	}
	u, err := p.Lookup(ctx, "mover@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if d := u.MovedLocal.Sub(u.Moved); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Errorf("MovedLocal %v is %v after Moved %v, want an hour", u.MovedLocal, d, u.Moved)
	}
	if d := time.Since(u.Moved); d < -time.Second || d > 10*time.Second {
		t.Errorf("Moved %v is not PostgreSQL's now", u.Moved)
	}
	s, err := p.Lookup(ctx, "stay@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Moved.IsZero() || !s.MovedLocal.IsZero() {
		t.Errorf("a user never moved: Moved %v MovedLocal %v", s.Moved, s.MovedLocal)
	}
}
