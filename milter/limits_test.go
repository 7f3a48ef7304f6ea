package milter_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
)

// bodyReplacer is a milter (go-milter's server, the peer) that replaces every body with
// n bytes.
type bodyReplacer struct {
	gomilter.NoOpMilter
	n int
}

func (b *bodyReplacer) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	if err := m.ReplaceBody(strings.NewReader(strings.Repeat("x", b.n))); err != nil {
		return nil, err
	}
	return gomilter.RespAccept, nil
}

func startReplacer(t *testing.T, n int) string {
	t.Helper()
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return &bodyReplacer{n: n} }),
		gomilter.WithActions(gomilter.OptChangeBody))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestClientBodyReplacementBounded: a milter whose new body makes the message larger
// than MaxMessageSize gets the default action (tempfail) and the message is kept as it
// was; a smaller replacement is applied.
func TestClientBodyReplacementBounded(t *testing.T) {
	raw := []byte("Subject: s\r\n\r\nbody\r\n")
	for _, tc := range []struct {
		n       int
		verdict policy.Verdict
		want    string
	}{
		{n: 100, verdict: policy.Accept, want: "Subject: s\r\n\r\n" + strings.Repeat("x", 100)},
		{n: 5000, verdict: policy.Tempfail, want: string(raw)},
	} {
		c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:" + startReplacer(t, tc.n), MaxMessageSize: 4096, Hostname: "mx.test"})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), Port: 4242, HELO: "client.test"})
		s, d := c.Open(ctx, tx)
		if d.Terminal() {
			t.Fatalf("connect: %+v", d)
		}
		s.Helo(ctx, tx)
		tx.Envelope.From = address.Parse("a@sender.test")
		s.Mail(ctx, tx)
		tx.Rcpt = address.Parse("b@remote.test")
		s.Rcpt(ctx, tx)
		d, out := s.Message(ctx, tx, raw)
		s.Close()
		if d.Verdict != tc.verdict || string(out) != tc.want {
			t.Errorf("replacement of %d bytes: %v %.60q, want %v %.60q", tc.n, d.Verdict, out, tc.verdict, tc.want)
		}
	}
}

// TestServerRecipientsBounded: the milter server answers 452 4.5.3 past 1000 recipients
// of one transaction instead of growing it without end.
func TestServerRecipientsBounded(t *testing.T) {
	addr, _ := startMilter(t, "127.0.0.1:0")
	c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:" + addr, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), Port: 4242, HELO: "client.test"})
	s, _ := c.Open(ctx, tx)
	defer s.Close()
	s.Helo(ctx, tx)
	tx.Envelope.From = address.Parse("a@sender.test")
	if d := s.Mail(ctx, tx); d.Terminal() {
		t.Fatalf("mail: %+v", d)
	}
	for i := range 1000 {
		tx.Rcpt = address.Parse(fmt.Sprintf("u%d@remote.test", i))
		if d := s.Rcpt(ctx, tx); d.Terminal() {
			t.Fatalf("recipient %d: %+v", i, d)
		}
	}
	tx.Rcpt = address.Parse("last@remote.test")
	if d := s.Rcpt(ctx, tx); d.Verdict != policy.Tempfail || d.Reply.String() != "452 4.5.3 Too many recipients" {
		t.Fatalf("recipient 1001: %+v, want 452 4.5.3", d)
	}
}

// TestClientUnchangedMessageKeptAsIs: a milter that changes nothing gives back the
// message byte for byte, whatever its header holds (here a line without a colon and
// no empty line before the body), not a copy rebuilt from the parsed fields.
func TestClientUnchangedMessageKeptAsIs(t *testing.T) {
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:" + ln.Addr().String(), Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{
		"Subject: s\r\nnot a header line\r\n\r\nbody\r\n",
		"Subject: s\r\nX-Folded: a\r\n b\r\n\r\nbody\r\n",
		"Subject: no body separator\r\n",
		"From: a@b\nSubject: bare LF\n\nbody\n",
	} {
		ctx := context.Background()
		tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), Port: 4242, HELO: "client.test"})
		s, _ := c.Open(ctx, tx)
		s.Helo(ctx, tx)
		tx.Envelope.From = address.Parse("a@sender.test")
		s.Mail(ctx, tx)
		tx.Rcpt = address.Parse("b@remote.test")
		s.Rcpt(ctx, tx)
		d, out := s.Message(ctx, tx, []byte(raw))
		s.Close()
		if d.Terminal() || string(out) != raw {
			t.Errorf("%q came back %v %q", raw, d.Verdict, out)
		}
	}
}
