package dispatch_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/deliverytest"
	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/local"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

// An alias that lists itself keeps a copy in its own mailbox and forwards the rest;
// a message that already went through an alias does not go through it again.
func TestAliasKeepsCopyAndLoopGuard(t *testing.T) {
	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases")
	os.WriteFile(aliases, []byte("keep: keep, bob\nlist: alice, bob\n"), 0o644)
	router, err := route.New(route.Config{LocalDomains: []string{"example.test"}, Aliases: aliases, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(store.Config{Dir: filepath.Join(dir, "mail")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	md, _ := local.New(local.Config{Store: st})
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	d, _ := dispatch.New(dispatch.Config{Router: router, Local: md, Reinject: sp.Enqueue})
	q, _ := delivery.New(delivery.Config{MinBackoff: time.Hour, Logger: quiet}, sp, d)
	ctx, stop := deliverytest.Start(q)
	defer stop()

	enqueue := func(msg string, to ...string) {
		if _, err := sp.Enqueue(ctx, spool.Envelope{From: "x@example.net", To: to}, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	enqueue("Subject: keep\r\n\r\nhi\r\n", "keep@example.test")
	// A copy that claims to have been through the list already is a loop: bounced to
	// x@example.net (remote, no relay here: that bounce stays queued).
	enqueue("Delivered-To: list@example.test\r\nSubject: looped\r\n\r\nhi\r\n", "list@example.test")
	deliverytest.WaitIdle(t, q, 30*time.Second)
	count := func(user string) int {
		u, err := st.Open(ctx, user+"@example.test")
		if err != nil {
			t.Fatal(err)
		}
		defer u.Release()
		s, err := u.Status(ctx, store.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		return int(s.Messages)
	}
	if k, b, a := count("keep"), count("bob"), count("alice"); k != 1 || b != 1 || a != 0 {
		t.Fatalf("keep %d, bob %d, alice %d messages; want 1, 1, 0", k, b, a)
	}
}
