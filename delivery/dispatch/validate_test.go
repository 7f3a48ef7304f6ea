package dispatch_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/spool"
)

// TestRcptValidationAgainstDovecot: the users exist only in Dovecot; the MX asks it over
// LMTP at RCPT time (lmtp.Client.Verify as route's LocalUserExists), so an unknown user
// gets 550 5.1.1 during the SMTP dialogue and nothing is accepted that would bounce.
func TestRcptValidationAgainstDovecot(t *testing.T) {
	dc := dovecottest.Start(t, "alice@example.test")
	lc, _ := lmtp.New(lmtp.Config{})
	defer lc.Close()
	dest := "unix:" + dc.LMTPSocket()
	r, err := route.New(route.Config{LocalDomains: []string{"example.test"}, LocalTransport: "lmtp:" + dest, Logger: quiet,
		LocalUserExists: func(ctx context.Context, a string) (bool, error) { return lc.Verify(ctx, dest, a) }})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtpd.New(smtpd.Config{
		Hostname: "mx.example.test", DataDir: t.TempDir(), LocalDomains: []string{"example.test"},
		Listeners: []smtpd.ListenerConfig{{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX}},
	}, smtpd.Deps{Spool: nullQueue{}, Recipients: r, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	c, err := smtp.Dial(srv.Addr("mx").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice+tag@example.test", nil); err != nil {
		t.Fatalf("alice refused: %v", err)
	}
	err = c.Rcpt("ghost@example.test", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("ghost: %v, want 550 5.1.1", err)
	}
	// Dovecot goes away: 451, not 550.
	lc.Close()
	dc.Stop()
	err = c.Rcpt("alice@example.test", nil)
	if !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("with Dovecot down: %v, want 451", err)
	}
}

type nullQueue struct{}

func (nullQueue) Enqueue(_ context.Context, _ spool.Envelope, msg io.Reader) (string, error) {
	io.Copy(io.Discard, msg)
	return "id", nil
}
