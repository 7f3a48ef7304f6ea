package pop3d

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
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
