package dispatch_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/deliverytest"
	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/spool"
)

var quiet = slog.New(slog.DiscardHandler)

// TestEndToEnd runs the queue manager on a real spool with the dispatcher: local
// recipients go by LMTP into a real Dovecot, an alias expands to local and remote
// addresses, remote ones are relayed to a real Postfix found by MX lookup, and the two
// unknown users (one per peer) come back to the sender as one RFC 3464 bounce in her
// Dovecot mailbox. A recipient the remote defers stays queued.
func TestEndToEnd(t *testing.T) {
	dc := dovecottest.Start(t, "alice@example.test", "bob@example.test", "sender@example.test")
	pf := postfixtest.Start(t, postfixtest.Config{Users: []string{"carol"},
		Access: map[string]string{"defer@remote.test": "450 4.2.0 try again later"}})
	var port int
	fmt.Sscan(pf.Addr[strings.LastIndexByte(pf.Addr, ':')+1:], &port)
	dns := dnstest.New(t, dnstest.Zone{"remote.test.": {"MX 10 mx.remote.test."}, "mx.remote.test.": {"A 127.0.0.1"}})

	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases")
	os.WriteFile(aliases, []byte("team: alice, bob,\n  carol@remote.test\nloop: loop2\nloop2: loop\n"), 0o644)
	router, err := route.New(route.Config{
		LocalDomains: []string{"example.test"}, Aliases: aliases,
		LocalTransport: "lmtp:" + dc.LMTPAddr(), Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	lc, _ := lmtp.New(lmtp.Config{LocalName: "mx.example.test"})
	defer lc.Close()
	rc, _ := relay.New(relay.Config{Hostname: "mx.example.test", Port: port, Resolver: dns.Resolver(), Logger: quiet})
	defer rc.Close()
	d, err := dispatch.New(dispatch.Config{Router: router, LMTP: lc, Relay: rc, Reinject: sp.Enqueue})
	if err != nil {
		t.Fatal(err)
	}
	q, err := delivery.New(delivery.Config{Hostname: "mx.example.test", MinBackoff: time.Hour, Logger: quiet}, sp, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := deliverytest.Start(q)
	defer stop()

	msg := "From: sender@example.test\r\nTo: team@example.test\r\nSubject: e2e\r\nMessage-ID: <e2e@example.test>\r\n\r\nHello team.\r\n"
	rcpts := []string{"alice@example.test", "team@example.test", "ghost@example.test", "nobody@remote.test", "defer@remote.test", "loop@example.test"}
	id, err := sp.Enqueue(ctx, spool.Envelope{From: "sender@example.test", To: rcpts}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	deliverytest.WaitIdle(t, q, 60*time.Second)

	if n := dc.Count("alice@example.test"); n != 2 {
		t.Errorf("alice has %d messages, want 2 (direct and through team)", n)
	}
	if got := dc.Messages(t, "bob@example.test"); len(got) != 1 || !bytes.Contains(got[0], []byte("Delivered-To: team@example.test")) {
		t.Errorf("bob: %q", got)
	}
	pf.WaitMessages(t, "carol", 1)

	bounces := dc.Messages(t, "sender@example.test")
	if len(bounces) != 1 {
		t.Fatalf("sender has %d messages, want one bounce\n%s", len(bounces), dc.Log())
	}
	b := string(bounces[0])
	for _, want := range []string{"Return-Path: <>", "multipart/report", "Final-Recipient: rfc822; ghost@example.test",
		"Final-Recipient: rfc822; nobody@remote.test", "Final-Recipient: rfc822; loop@example.test", "Status: 5.1.1", "Status: 5.4.6", "Action: failed"} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "defer@remote.test") || strings.Contains(b, "carol@remote.test") {
		t.Errorf("bounce mentions a recipient that did not fail:\n%s", b)
	}

	// The deferred recipient keeps the message queued.
	st, err := sp.Status(id)
	if err != nil {
		t.Fatalf("original message gone: %v", err)
	}
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatal(err)
	}
	if rem := st.Remaining(env); !slices.Equal(rem, []string{"defer@remote.test"}) {
		t.Errorf("remaining %v, want [defer@remote.test]", rem)
	}
	ids, _ := sp.List()
	if len(ids) != 1 {
		t.Errorf("spool holds %d messages, want 1", len(ids))
	}
}
