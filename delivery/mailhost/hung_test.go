package mailhost_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/mailhost"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/spool"
)

// hungListener accepts connections and never answers: a back-end whose LMTP process
// hangs (a stuck storage mount) while the kernel still completes the handshake.
func hungListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); close(done) })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	return l.Addr().String()
}

// TestDeliverAllHungBackend: a message to a user of a hung back-end and a user of a
// healthy one (a real Dovecot). The hung back-end holds its transaction until the
// attempt's deadline; the healthy one must not wait behind it, so only the hung
// back-end's recipient is deferred.
func TestDeliverAllHungBackend(t *testing.T) {
	dc := dovecottest.Start(t, "dan@example.test")
	dir, err := directory.OpenPostgres(context.Background(), pgtest.NewDatabase(t, pgtest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, u := range []directory.User{
		{Address: "ann@example.test", MailHost: "hung"},
		{Address: "dan@example.test", MailHost: "store1"},
	} {
		if err := dir.Put(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	lc, err := lmtp.New(lmtp.Config{LocalName: "fe.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	hosts := directory.Config{Hosts: map[string]directory.Host{
		"hung":   {LMTP: hungListener(t)},
		"store1": {LMTP: dc.LMTPAddr()},
	}}
	d, err := mailhost.New(mailhost.Config{Hosts: hosts}, mailhost.Deps{Directory: dir, LMTP: lc})
	if err != nil {
		t.Fatal(err)
	}
	// The attempt's timeout (delivery.Config.AttemptTimeout), short here. ann comes
	// first: in turn, her back-end would eat all of it.
	const attempt = 8 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), attempt)
	defer cancel()
	start := time.Now()
	res := d.DeliverAll(ctx, spool.Envelope{From: "x@example.net"}, []string{"ann@example.test", "dan@example.test"},
		strings.NewReader("From: x@example.net\r\nSubject: hung\r\n\r\nhello\r\n"))
	took := time.Since(start)
	if res[1].Err != nil || !strings.HasPrefix(res[1].Reply, "250") {
		t.Errorf("dan, on the healthy back-end: %q %v, want delivered", res[1].Reply, res[1].Err)
	}
	if res[0].Err == nil || delivery.IsPermanent(res[0].Err) {
		t.Errorf("ann, on the hung back-end: %v, want deferred", res[0].Err)
	}
	if n := dc.Count("dan@example.test"); n != 1 {
		t.Errorf("dan has %d messages, want 1", n)
	}
	if took > attempt+5*time.Second {
		t.Errorf("DeliverAll took %v, beyond the attempt's %v", took, attempt)
	}
}
