package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/deliverytest"
	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

// newStoreDeliverer returns a deliverer over a fresh store with a quota of quota bytes,
// where alice and bob exist.
func newStoreDeliverer(t *testing.T, quota, maxMsg int64) (*Deliverer, *store.Store) {
	t.Helper()
	st, err := store.New(store.Config{Dir: t.TempDir(), Quota: bytesize.Size(quota), MaxMessageSize: bytesize.Size(maxMsg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	users := map[string]bool{"alice@example.org": true, "bob@example.org": true}
	d, err := New(Config{Store: st, Exists: func(_ context.Context, a string) (bool, error) {
		return users[a], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return d, st
}

// inbox returns the messages in user's INBOX, read back through the store.
func inbox(t *testing.T, st *store.Store, user string) [][]byte {
	t.Helper()
	ctx := context.Background()
	u, err := st.Open(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	mb, msgs, err := u.Messages(ctx, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, m := range msgs {
		f, err := u.Open(mb, m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

const storeTestMsg = "From: carol@example.net\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"

func TestDelivers(t *testing.T) {
	d, st := newStoreDeliverer(t, 0, 0)
	ctx := context.Background()

	// An IMAP session idling on alice's INBOX would be watching it like this.
	u, err := st.Open(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox(ctx, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	w := u.Watch(mb)
	defer w.Close()
	u.Release()

	env := spool.Envelope{From: "carol@example.net"}
	if err := d.Deliver(ctx, "Alice+Lists@Example.org", env, strings.NewReader(storeTestMsg)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	select {
	case <-w.C():
		evs, _ := w.Take()
		if len(evs) != 1 || evs[0].Kind != store.Appended || len(evs[0].UIDs) != 1 {
			t.Errorf("watcher got %+v, want one Appended event with one UID", evs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher of alice's INBOX saw nothing")
	}
	got := inbox(t, st, "alice@example.org")
	want := "Return-Path: <carol@example.net>\r\nDelivered-To: Alice+Lists@Example.org\r\n" + storeTestMsg
	if len(got) != 1 || string(got[0]) != want {
		t.Fatalf("INBOX = %q, want [%q]", got, want)
	}

	// The null sender gets an empty Return-Path.
	if err := d.Deliver(ctx, "bob@example.org", spool.Envelope{}, strings.NewReader(storeTestMsg)); err != nil {
		t.Fatal(err)
	}
	if got := inbox(t, st, "bob@example.org"); len(got) != 1 || !bytes.HasPrefix(got[0], []byte("Return-Path: <>\r\n")) {
		t.Fatalf("bob's INBOX = %q", got)
	}
}

func TestFailures(t *testing.T) {
	d, st := newStoreDeliverer(t, 300, 1000)
	ctx := context.Background()
	env := spool.Envelope{From: "carol@example.net"}

	for _, tc := range []struct {
		name, rcpt, msg string
		reply           string // "" for success
		permanent       bool
	}{
		{"unknown user", "nobody@example.org", storeTestMsg, "550 5.1.1", true},
		{"bad address", "no-domain", storeTestMsg, "550 5.1.3", true},
		{"line break", "alice@example.org", storeTestMsg, "", false},
		{"too big", "alice@example.org", storeTestMsg + strings.Repeat("x", 1000), "552 5.2.3", true},
		{"fills the quota", "alice@example.org", storeTestMsg + strings.Repeat("y", 100), "", false},
		{"over quota", "alice+x@example.org", storeTestMsg, "452 4.2.2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := env
			if tc.name == "line break" {
				e.From = "evil@example.net>\r\nX-Injected: yes"
				tc.reply, tc.permanent = "550 5.1.7", true
			}
			err := d.Deliver(ctx, tc.rcpt, e, strings.NewReader(tc.msg))
			if tc.reply == "" {
				if err != nil {
					t.Fatalf("Deliver: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Deliver succeeded, want %s", tc.reply)
			}
			reply, ok := delivery.ReplyOf(err)
			if !ok || !strings.HasPrefix(reply, tc.reply) {
				t.Errorf("reply %q (%v), want %s", reply, err, tc.reply)
			}
			if delivery.IsPermanent(err) != tc.permanent {
				t.Errorf("delivery.IsPermanent(%v) = %v, want %v", err, delivery.IsPermanent(err), tc.permanent)
			}
		})
	}
	if n := len(inbox(t, st, "alice@example.org")); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
	// Over quota is temporary and names the store's error.
	err := d.CheckQuota(ctx, "alice@example.org", 100)
	if !errors.Is(err, store.ErrOverQuota) || delivery.IsPermanent(err) {
		t.Errorf("CheckQuota(alice) = %v, want a temporary ErrOverQuota", err)
	}
	if err := d.CheckQuota(ctx, "bob@example.org", 100); err != nil {
		t.Errorf("CheckQuota(bob, 100) = %v", err)
	}
	if err := d.CheckQuota(ctx, "bob@example.org", 301); !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("CheckQuota(bob, 301) = %v, want ErrOverQuota", err)
	}
	// Not a mailbox (an alias, or unknown): not the quota check's business, and no
	// mailbox is created for it.
	if err := d.CheckQuota(ctx, "nobody@example.org", 1); err != nil {
		t.Errorf("CheckQuota(nobody) = %v, want nil", err)
	}
	if _, err := os.Stat(filepath.Join(st.Config().Dir, "example.org", "nobody")); !os.IsNotExist(err) {
		t.Errorf("CheckQuota made a directory for nobody: %v", err)
	}
}

func TestNewConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no store: no error")
	}
	st, _ := store.New(store.Config{Dir: t.TempDir()})
	if _, err := New(Config{Store: st, Mailbox: "../x"}); err == nil {
		t.Error("bad mailbox: no error")
	}
}

func Example() {
	dir, _ := os.MkdirTemp("", "store-example-")
	defer os.RemoveAll(dir)
	st, _ := store.New(store.Config{Dir: dir})
	defer st.Close()
	d, _ := New(Config{Store: st})
	err := d.Deliver(context.Background(), "alice+news@example.org", spool.Envelope{From: "bob@example.net"},
		strings.NewReader("Subject: hi\r\n\r\nhello\r\n"))
	fmt.Println(err)
	u, _ := st.Open(context.Background(), "alice@example.org")
	defer u.Release()
	s, _ := u.Status(context.Background(), "INBOX")
	fmt.Println(s.Messages)
	// Output:
	// <nil>
	// 1
}

// The queue manager delivering local mail into the store through the dispatcher, as the
// server wires it: delivered, deferred over quota (the message stays queued for a
// retry), bounced for an unknown user (with the deliverer's reply).
func TestThroughQueue(t *testing.T) {
	d, st := newStoreDeliverer(t, 400, 0)
	if _, err := st.Deliver(context.Background(), "bob@example.org", "", strings.NewReader(storeTestMsg+strings.Repeat("z", 300)), nil); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(t.TempDir(), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	rt, err := route.New(route.Config{LocalDomains: []string{"example.org"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	router, err := dispatch.New(dispatch.Config{Router: rt, Local: d})
	if err != nil {
		t.Fatal(err)
	}
	q, err := delivery.New(delivery.Config{Hostname: "mx.example.org", MinBackoff: time.Hour, Logger: slog.New(slog.DiscardHandler)}, sp, router)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := deliverytest.Start(q)
	defer stop()
	id, err := sp.Enqueue(ctx, spool.Envelope{From: "carol@example.net", ReceivedAt: time.Now(),
		To: []string{"alice@example.org", "bob@example.org", "nobody@example.org"}}, strings.NewReader(storeTestMsg))
	if err != nil {
		t.Fatal(err)
	}
	deliverytest.WaitIdle(t, q, 20*time.Second)
	s, err := sp.Status(id)
	if err != nil {
		t.Fatalf("message %s not queued any more: %v", id, err)
	}
	for rcpt, want := range map[string]spool.RcptState{"alice@example.org": spool.Delivered, "bob@example.org": spool.Deferred, "nobody@example.org": spool.Failed} {
		if got := s.Rcpts[rcpt]; got.State != want {
			t.Errorf("%s: %+v, want state %v", rcpt, got, want)
		}
	}
	if r := s.Rcpts["bob@example.org"].Reply; !strings.Contains(r, "4.2.2 mailbox full") {
		t.Errorf("bob's reply %q", r)
	}
	if r := s.Rcpts["nobody@example.org"].Reply; r != "550 5.1.1 no such user here" {
		t.Errorf("nobody's reply %q", r)
	}
	if got := inbox(t, st, "alice@example.org"); len(got) != 1 {
		t.Errorf("alice has %d messages", len(got))
	}
}
