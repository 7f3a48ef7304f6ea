package pop3d

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/store"
)

// TestKeptUIDLs: a message whose UIDL a migration kept (store.SetUIDL) is listed with it;
// the others keep their own.
func TestKeptUIDLs(t *testing.T) {
	e := start(t, Config{})
	uid1 := e.deliver(t, "alice@example.org", msg1)
	e.deliver(t, "alice@example.org", msg2)
	ctx := context.Background()
	u, err := e.store.Open(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox(ctx, "INBOX")
	if err == nil {
		err = u.SetUIDL(ctx, mb, uid1, "00000001506a8b2c")
	}
	u.Release()
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, e.addr)
	c.starttls(&tls.Config{InsecureSkipVerify: true})
	c.cmd("USER alice@example.org", "+OK")
	c.cmd("PASS secret pw", "+OK")
	c.cmd("UIDL", "+OK")
	ls := c.multi()
	if len(ls) != 2 || ls[0] != "1 00000001506a8b2c" || !strings.HasPrefix(ls[1], "2 ") || ls[1] == "2 00000001506a8b2c" {
		t.Fatalf("UIDL %q", ls)
	}
	if l := c.cmd("UIDL 1", "+OK"); l != "+OK 1 00000001506a8b2c" {
		t.Fatalf("UIDL 1: %q", l)
	}
}

// uidlsOf logs in as alice over a trusted connection and returns UIDL's listing.
func uidlsOf(t *testing.T, addr string) []string {
	t.Helper()
	c := dial(t, addr)
	c.cmd("USER alice@example.org", "+OK")
	c.cmd("PASS secret pw", "+OK")
	c.cmd("UIDL", "+OK")
	ls := c.multi()
	c.cmd("QUIT", "+OK")
	return ls
}

// TestUIDLStable: a message's UIDL (RFC 1939 §7: never changes while the message is in
// the maildrop) survives IMAP flag changes (which rename its file into cur/ with the
// flags in the name), a server and store restart, and a resynchronisation of the index
// from the files (Rebuild); a migration's kept UIDL survives the restart too.
func TestUIDLStable(t *testing.T) {
	ctx := context.Background()
	st := mailboxtest.Store(t, store.Config{})
	serve := func(st *store.Store) (*Server, string) {
		srv, err := New(Config{Trusted: true}, st, mailboxtest.Users, nil)
		if err != nil {
			t.Fatal(err)
		}
		return srv, mailboxtest.Serve(t, srv)
	}
	srv, addr := serve(st)
	for _, m := range []string{msg1, msg2, "Subject: three\r\n\r\n3\r\n"} {
		mailboxtest.Deliver(t, st, "alice@example.org", m)
	}
	u, err := st.Open(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox(ctx, store.Inbox)
	if err := u.SetUIDL(ctx, mb, 3, "migrated-0003"); err != nil {
		t.Fatal(err)
	}
	u.Release()
	before := uidlsOf(t, addr)
	if len(before) != 3 || before[2] != "3 migrated-0003" {
		t.Fatalf("UIDL %q", before)
	}

	// An IMAP client flags and reads them (each SetFlags renames the files).
	u, _ = st.Open(ctx, "alice@example.org")
	for _, ch := range []struct {
		op    store.FlagOp
		flags []string
	}{
		{store.FlagsAdd, []string{store.FlagSeen}},
		{store.FlagsAdd, []string{store.FlagFlagged, "$Junk", "Work"}},
		{store.FlagsRemove, []string{store.FlagSeen}},
		{store.FlagsReplace, []string{store.FlagAnswered}},
	} {
		if _, err := u.SetFlags(ctx, mb, []uint32{1, 2, 3}, ch.op, ch.flags, nil); err != nil {
			t.Fatal(err)
		}
		if got := uidlsOf(t, addr); !slices.Equal(got, before) {
			t.Fatalf("after %v %v: UIDL %q, was %q", ch.op, ch.flags, got, before)
		}
	}
	u.Release()

	// Restart: a new server over a new store on the same directory.
	srv.Close()
	cfg := st.Config()
	st.Close()
	st2, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	_, addr = serve(st2)
	if got := uidlsOf(t, addr); !slices.Equal(got, before) {
		t.Fatalf("after a restart: UIDL %q, was %q", got, before)
	}
	u, _ = st2.Open(ctx, "alice@example.org")
	defer u.Release()
	if err := u.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if got := uidlsOf(t, addr); !slices.Equal(got, before) {
		t.Fatalf("after a rebuild of the index: UIDL %q, was %q", got, before)
	}
}
