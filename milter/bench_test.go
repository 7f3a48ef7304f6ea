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

// BenchmarkMessage: one 4 KiB message through the milter client and server over
// loopback (MAIL, RCPT, headers, body, end of message with header insertion), one
// session per message as Postfix opens one per SMTP session (bench/doors.sh compares the
// server behind a real Postfix with rspamd).
func BenchmarkMessage(b *testing.B) {
	addr, _ := startMilter(b, "127.0.0.1:0")
	c, err := milter.NewClient(milter.ClientConfig{Addr: addr})
	if err != nil {
		b.Fatal(err)
	}
	raw := []byte("From: <a@sender.test>\r\nTo: <alice@remote.test>\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 64))
	ctx := context.Background()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), HELO: "client.test"})
		s, d := c.Open(ctx, tx)
		if d.Terminal() {
			b.Fatal(d)
		}
		s.Helo(ctx, tx)
		tx.Envelope.From = address.Parse("a@sender.test")
		s.Mail(ctx, tx)
		tx.Rcpt = address.Parse("alice@remote.test")
		s.Rcpt(ctx, tx)
		if d, _ := s.Message(ctx, tx, raw); d.Terminal() {
			b.Fatal(d)
		}
		s.Close()
	}
}
