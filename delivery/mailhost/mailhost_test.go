package mailhost_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/mailhost"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/spool"
)

// TestDeliver delivers through the directory in a real PostgreSQL to a real Dovecot
// (the back-end "store1") and checks each way a recipient can fail: only the unknown
// address is permanent.
func TestDeliver(t *testing.T) {
	ctx := context.Background()
	dc := dovecottest.Start(t, "ann@example.test", "dan@example.test")
	dir, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(t, pgtest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, u := range []directory.User{
		{Address: "ann@example.test", MailHost: "store1"},
		{Address: "bob@example.test", MailHost: "store2"}, // down
		{Address: "cat@example.test", MailHost: "store1", State: directory.StateMoving},
		{Address: "dan@example.test"},                     // no mail host: the default
		{Address: "eve@example.test", MailHost: "store9"}, // not in the hosts table
	} {
		if err := dir.Put(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := dir.AddAlias(ctx, "ann@example.test", "sales@example.test"); err != nil {
		t.Fatal(err)
	}
	lc, err := lmtp.New(lmtp.Config{LocalName: "fe.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	hosts := directory.Config{DefaultHost: "store1", Hosts: map[string]directory.Host{
		"store1": {LMTP: "unix:" + dc.LMTPSocket()},
		"store2": {LMTP: testenv.FreeAddr(t)},
	}}
	d, err := mailhost.New(mailhost.Config{Hosts: hosts}, mailhost.Deps{Directory: dir, LMTP: lc})
	if err != nil {
		t.Fatal(err)
	}
	env := spool.Envelope{From: "x@example.net"}
	send := func(rcpt string) error {
		msg := "From: x@example.net\r\nSubject: to " + rcpt + "\r\n\r\nhello\r\n"
		return d.Deliver(ctx, rcpt, env, strings.NewReader(msg))
	}
	for _, rcpt := range []string{"ann@example.test", "Sales@example.test", "ann+news@example.test", "dan@example.test"} {
		if err := send(rcpt); err != nil {
			t.Fatalf("%s: %v", rcpt, err)
		}
	}
	if n := dc.Count("ann@example.test"); n != 3 {
		t.Fatalf("ann has %d messages, want 3 (direct, alias, extension)", n)
	}
	if n := dc.Count("dan@example.test"); n != 1 {
		t.Fatalf("dan (default host) has %d messages", n)
	}
	for rcpt, want := range map[string]string{
		"bob@example.test": "451 4.4.1", // back-end down
		"cat@example.test": "450 4.2.1", // moving: held
		"eve@example.test": "451 4.3.5", // unknown mail host
	} {
		err := send(rcpt)
		if err == nil || delivery.IsPermanent(err) {
			t.Fatalf("%s: %v, want a temporary failure", rcpt, err)
		}
		if r, _ := delivery.ReplyOf(err); !strings.HasPrefix(r, want) {
			t.Fatalf("%s: reply %q, want %s", rcpt, r, want)
		}
	}
	err = send("nobody@example.test")
	if r, _ := delivery.ReplyOf(err); !delivery.IsPermanent(err) || !strings.HasPrefix(r, "550 5.1.1") {
		t.Fatalf("unknown user: %v", err)
	}
	if ok, err := d.Exists(ctx, "sales@example.test"); !ok || err != nil {
		t.Fatalf("Exists(alias) = %v, %v", ok, err)
	}
	if ok, err := d.Exists(ctx, "nobody@example.test"); ok || err != nil {
		t.Fatalf("Exists(nobody) = %v, %v", ok, err)
	}
	// A directory that cannot be asked: temporary, at RCPT and at delivery.
	down, _ := mailhost.New(mailhost.Config{Hosts: hosts}, mailhost.Deps{Directory: failing{}, LMTP: lc})
	if _, err := down.Exists(ctx, "ann@example.test"); err == nil {
		t.Fatal("Exists with the directory down: no error")
	}
	err = down.Deliver(ctx, "ann@example.test", env, bytes.NewReader([]byte("Subject: x\r\n\r\n")))
	if r, _ := delivery.ReplyOf(err); delivery.IsPermanent(err) || !strings.HasPrefix(r, "451 4.4.3") {
		t.Fatalf("directory down: %v", err)
	}
}

// failing is a directory that cannot be asked: an outage the real server cannot be told
// to have on one call.
type failing struct{}

func (failing) Lookup(context.Context, string) (directory.User, error) {
	return directory.User{}, errors.New("connection refused")
}

// TestDeliverAllOneTransaction delivers a message to several recipients at once: those
// of one back-end share one LMTP transaction (Dovecot stamps each transaction's Received
// field with its own id), and each recipient that cannot be delivered gets its own result.
func TestDeliverAllOneTransaction(t *testing.T) {
	ctx := context.Background()
	dc := dovecottest.Start(t, "ann@example.test", "dan@example.test")
	dir, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(t, pgtest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, u := range []directory.User{
		{Address: "ann@example.test", MailHost: "store1"},
		{Address: "dan@example.test", MailHost: "store1"},
		{Address: "bob@example.test", MailHost: "store2"}, // down
		{Address: "cat@example.test", MailHost: "store1", State: directory.StateMoving},
	} {
		if err := dir.Put(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	lc, err := lmtp.New(lmtp.Config{LocalName: "fe.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	hosts := directory.Config{Hosts: map[string]directory.Host{
		"store1": {LMTP: dc.LMTPAddr()},
		"store2": {LMTP: testenv.FreeAddr(t)},
	}}
	d, err := mailhost.New(mailhost.Config{Hosts: hosts}, mailhost.Deps{Directory: dir, LMTP: lc})
	if err != nil {
		t.Fatal(err)
	}
	rcpts := []string{"ann@example.test", "bob@example.test", "dan@example.test", "nobody@example.test", "cat@example.test"}
	msg := "From: x@example.net\r\nSubject: to all\r\n\r\nhello\r\n"
	res := d.DeliverAll(ctx, spool.Envelope{From: "x@example.net"}, rcpts, strings.NewReader(msg))
	if len(res) != len(rcpts) {
		t.Fatalf("%d results for %d recipients", len(res), len(rcpts))
	}
	want := map[string]string{"ann@example.test": "250", "dan@example.test": "250",
		"bob@example.test": "451 4.4.1", "nobody@example.test": "550 5.1.1", "cat@example.test": "450 4.2.1"}
	for i, r := range res {
		if r.Rcpt != rcpts[i] {
			t.Fatalf("result %d is for %s, want %s", i, r.Rcpt, rcpts[i])
		}
		reply := r.Reply
		if r.Err != nil {
			reply, _ = delivery.ReplyOf(r.Err)
		}
		if !strings.HasPrefix(reply, want[r.Rcpt]) {
			t.Errorf("%s: %q (%v), want %s", r.Rcpt, reply, r.Err, want[r.Rcpt])
		}
		if (r.Err == nil) != (want[r.Rcpt] == "250") {
			t.Errorf("%s: err %v", r.Rcpt, r.Err)
		}
	}
	if delivery.IsPermanent(res[1].Err) || !delivery.IsPermanent(res[3].Err) || delivery.IsPermanent(res[4].Err) {
		t.Errorf("only the unknown user is permanent: %v / %v / %v", res[1].Err, res[3].Err, res[4].Err)
	}
	ann, dan := dc.Messages(t, "ann@example.test"), dc.Messages(t, "dan@example.test")
	if len(ann) != 1 || len(dan) != 1 {
		t.Fatalf("ann has %d messages, dan %d; want 1 each", len(ann), len(dan))
	}
	if a, b := lmtpID(t, ann[0]), lmtpID(t, dan[0]); a != b {
		t.Errorf("two LMTP transactions (ids %q and %q), want one for the back-end", a, b)
	}
}

// lmtpID returns the transaction id of Dovecot's Received field ("by HOST with LMTP
// id ID (envelope-from ...)", folded).
func lmtpID(t *testing.T, msg []byte) string {
	t.Helper()
	_, rest, ok := strings.Cut(string(msg), "with LMTP")
	f := strings.Fields(rest)
	if !ok || len(f) < 2 || f[0] != "id" {
		t.Fatalf("no Dovecot Received field in %q", msg)
	}
	return f[1]
}

// TestDeliverAllDuplicateUser: a message to a user and to their alias (two recipients
// the directory maps to one user of one back-end) is delivered once, as Postfix's
// duplicate elimination does, and both recipients are recorded as delivered.
func TestDeliverAllDuplicateUser(t *testing.T) {
	ctx := context.Background()
	dc := dovecottest.Start(t, "ann@example.test")
	dir, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(t, pgtest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := dir.Put(ctx, directory.User{Address: "ann@example.test", MailHost: "store1"}); err != nil {
		t.Fatal(err)
	}
	if err := dir.AddAlias(ctx, "ann@example.test", "sales@example.test"); err != nil {
		t.Fatal(err)
	}
	lc, err := lmtp.New(lmtp.Config{LocalName: "fe.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	d, err := mailhost.New(mailhost.Config{Hosts: directory.Config{Hosts: map[string]directory.Host{"store1": {LMTP: dc.LMTPAddr()}}}},
		mailhost.Deps{Directory: dir, LMTP: lc})
	if err != nil {
		t.Fatal(err)
	}
	rcpts := []string{"sales@example.test", "ann@example.test"}
	res := d.DeliverAll(ctx, spool.Envelope{From: "x@example.net"}, rcpts, strings.NewReader("Subject: dup\r\n\r\nhello\r\n"))
	for i, r := range res {
		if r.Rcpt != rcpts[i] || r.Err != nil || !strings.HasPrefix(r.Reply, "250") {
			t.Errorf("result %d: %s %q %v, want %s delivered", i, r.Rcpt, r.Reply, r.Err, rcpts[i])
		}
	}
	if n := len(dc.Messages(t, "ann@example.test")); n != 1 {
		t.Errorf("ann has %d copies, want 1", n)
	}
}

// TestDeliverAllBrokenAfterRcptRejected: the back-end refuses one recipient at RCPT
// (550 5.1.1) and the connection breaks during DATA, so nothing was delivered: the
// refused recipient keeps its permanent reply (it bounces now, as it would have alone)
// and the accepted one is deferred. (No Dovecot can be made to break mid-DATA: a
// scripted LMTP server plays the back-end.)
func TestDeliverAllBrokenAfterRcptRejected(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "220 store1 LMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd := strings.ToUpper(line)
					switch {
					case strings.HasPrefix(cmd, "LHLO"):
						fmt.Fprintf(c, "250-store1\r\n250 PIPELINING\r\n")
					case strings.HasPrefix(cmd, "RCPT TO:<ANN@"):
						fmt.Fprintf(c, "550 5.1.1 <ann@example.test> User doesn't exist\r\n")
					case strings.HasPrefix(cmd, "DATA"):
						fmt.Fprintf(c, "354 go ahead\r\n")
						for line != ".\r\n" {
							if line, err = r.ReadString('\n'); err != nil {
								return
							}
						}
						return // broken before any reply to the data
					case strings.HasPrefix(cmd, "QUIT"):
						fmt.Fprintf(c, "221 bye\r\n")
						return
					default:
						fmt.Fprintf(c, "250 2.0.0 ok\r\n")
					}
				}
			}()
		}
	}()
	dir, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(t, pgtest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, a := range []string{"ann@example.test", "dan@example.test"} {
		if err := dir.Put(ctx, directory.User{Address: a, MailHost: "store1"}); err != nil {
			t.Fatal(err)
		}
	}
	lc, err := lmtp.New(lmtp.Config{LocalName: "fe.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	d, err := mailhost.New(mailhost.Config{Hosts: directory.Config{Hosts: map[string]directory.Host{"store1": {LMTP: l.Addr().String()}}}},
		mailhost.Deps{Directory: dir, LMTP: lc})
	if err != nil {
		t.Fatal(err)
	}
	res := d.DeliverAll(ctx, spool.Envelope{From: "x@example.net"}, []string{"ann@example.test", "dan@example.test"},
		strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if reply, _ := delivery.ReplyOf(res[0].Err); !delivery.IsPermanent(res[0].Err) || !strings.HasPrefix(reply, "550 5.1.1") {
		t.Errorf("ann, refused at RCPT: %q %v, want permanent 550 5.1.1", reply, res[0].Err)
	}
	if res[1].Err == nil || delivery.IsPermanent(res[1].Err) {
		t.Errorf("dan, accepted then broken: %v, want temporary", res[1].Err)
	}
	// dan's reason (logged, and the defer's text) is his own: not ann's 550.
	if reply, _ := delivery.ReplyOf(res[1].Err); res[1].Err != nil && (strings.Contains(res[1].Err.Error(), "ann@") ||
		!strings.HasPrefix(reply, "451 4.4.2 ") || !strings.Contains(reply, "<dan@example.test>")) {
		t.Errorf("dan's reason is %q (%v), want his own 451 4.4.2", reply, res[1].Err)
	}
}
