package milter_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
)

// TestClientAgainstServer: the milter client drives this package's own milter server
// (the peer: a real milter speaking protocol 6 over TCP) through a session: refusals
// at MAIL, RCPT and end of message come back as decisions with the server's replies,
// and an accepted message comes back with the server's headers inserted at the top.
func TestClientAgainstServer(t *testing.T) {
	addr, _ := startMilter(t, "127.0.0.1:0")
	c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:" + addr, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), Port: 4242, HELO: "client.test"})
	s, d := c.Open(ctx, tx)
	defer s.Close()
	if d.Verdict != policy.Continue {
		t.Fatalf("connect: %+v", d)
	}
	if d := s.Helo(ctx, tx); d.Verdict != policy.Continue {
		t.Fatalf("helo: %+v", d)
	}
	tx.Envelope.From = address.Parse("spammer@bad.test")
	d = s.Mail(ctx, tx)
	if d.Verdict != policy.Reject || d.Reply.String() != "550 5.7.1 go away" {
		t.Fatalf("mail: %+v", d)
	}
	tx.Reset()
	tx.Envelope.From = address.Parse("a@sender.test")
	if d := s.Mail(ctx, tx); d.Verdict != policy.Continue {
		t.Fatalf("mail 2: %+v", d)
	}
	tx.Rcpt = address.Parse("busy@remote.test")
	if d := s.Rcpt(ctx, tx); d.Verdict != policy.Tempfail || d.Reply.String() != "451 4.7.1 try later please" {
		t.Fatalf("rcpt: %+v", d)
	}
	tx.Rcpt = address.Parse("alice@remote.test")
	if d := s.Rcpt(ctx, tx); d.Verdict != policy.Continue {
		t.Fatalf("rcpt 2: %+v", d)
	}
	raw := "Received: from x by y; Sun, 6 Dec 2026 10:00:00 +0000\r\nFrom: <a@sender.test>\r\nSubject:  two spaces\r\n\tfolded\r\n\r\nbody line\r\n"
	d, out := s.Message(ctx, tx, []byte(raw))
	if d.Verdict != policy.Continue && d.Verdict != policy.Accept {
		t.Fatalf("message: %+v", d)
	}
	want := "X-Body-Check: seen\r\nX-Spam-Score: 1.5\r\n" + raw
	if string(out) != want {
		t.Fatalf("message after the milter:\n%q\nwant\n%q", out, want)
	}
	// The next message of the session is refused at its end.
	tx.Reset()
	s.Mail(ctx, tx)
	s.Rcpt(ctx, tx)
	d, out = s.Message(ctx, tx, []byte("Subject: reject me\r\n\r\nx\r\n"))
	if d.Verdict != policy.Reject || d.Reply.String() != "554 5.7.1 content refused" || string(out) != "Subject: reject me\r\n\r\nx\r\n" {
		t.Fatalf("reject at end of message: %+v %q", d, out)
	}
	// And a quarantined one is a quarantine decision.
	tx.Reset()
	s.Mail(ctx, tx)
	s.Rcpt(ctx, tx)
	if d, _ = s.Message(ctx, tx, []byte("Subject: hold\r\n\r\nx\r\n")); d.Verdict != policy.Quarantine {
		t.Fatalf("quarantine: %+v", d)
	}
}

// TestClientDefaultAction: an unreachable milter gives its default action.
func TestClientDefaultAction(t *testing.T) {
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7")})
	for action, want := range map[string]policy.Verdict{"": policy.Tempfail, "tempfail": policy.Tempfail, "accept": policy.Continue, "reject": policy.Reject} {
		c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:127.0.0.1:1", DefaultAction: action})
		if err != nil {
			t.Fatal(err)
		}
		s, d := c.Open(ctx, tx)
		if d.Verdict != want {
			t.Errorf("default_action %q: %v, want %v", action, d.Verdict, want)
		}
		// Whatever follows is quiet: the milter is not asked again.
		if d := s.Helo(ctx, tx); d.Verdict != policy.Continue {
			t.Errorf("default_action %q: helo after failure: %+v", action, d)
		}
		s.Close()
	}
	if _, err := milter.NewClient(milter.ClientConfig{Addr: "inet:127.0.0.1:1", DefaultAction: "maybe"}); err == nil {
		t.Error("default_action maybe accepted")
	}
}

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"inet:127.0.0.1:11332":  "tcp 127.0.0.1:11332",
		"inet:11332@127.0.0.1":  "tcp 127.0.0.1:11332",
		"inet:[::1]:11332":      "tcp [::1]:11332",
		"127.0.0.1:11332":       "tcp 127.0.0.1:11332",
		"unix:/run/milter.sock": "unix /run/milter.sock",
		"local:/run/m.sock":     "unix /run/m.sock",
		"inet:nohost":           "error",
		"unix:":                 "error",
	} {
		n, a, err := milter.ParseAddr(in)
		got := n + " " + a
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

// TestMessageTooBig: a message over max_message_size is refused at its end with 552
// 5.3.4, one that finds the memory budget exhausted with 451 4.3.1, and the session
// goes on.
func TestMessageTooBig(t *testing.T) {
	testTooBig(t, milter.Config{MaxMessageSize: 1024}, "552 5.3.4 Message too big")
	testTooBig(t, milter.Config{MaxDataMemory: 300 << 10}, "451 4.3.1 Insufficient system resources, try again later")
}

func testTooBig(t *testing.T, cfg milter.Config, want string) {
	eng, _ := newEngine(t)
	srv, err := milter.New(cfg, milter.Deps{Engine: eng, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := milter.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := milter.NewClient(milter.ClientConfig{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), HELO: "client.test"})
	s, _ := c.Open(ctx, tx)
	defer s.Close()
	s.Helo(ctx, tx)
	for i, size := range []int{200 << 10, 100} {
		tx.Reset()
		tx.Envelope.From = address.Parse("a@sender.test")
		s.Mail(ctx, tx)
		tx.Rcpt = address.Parse("alice@remote.test")
		s.Rcpt(ctx, tx)
		raw := "Subject: big\r\n\r\n" + strings.Repeat("x", size) + "\r\n"
		d, _ := s.Message(ctx, tx, []byte(raw))
		if i == 0 && (!d.Terminal() || d.Reply.String() != want) {
			t.Fatalf("big message: %+v", d)
		}
		if i == 1 && d.Terminal() {
			t.Fatalf("small message after a big one: %+v", d)
		}
	}
}
