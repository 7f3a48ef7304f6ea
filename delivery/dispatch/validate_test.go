package dispatch_test

import (
	"context"
	"errors"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/internal/smtpdtest"
	"github.com/portcullis-mail/portcullis/smtpd"
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
	srv := smtpdtest.Start(t, smtpd.Config{
		Hostname: "mx.example.test", DataDir: t.TempDir(), LocalDomains: []string{"example.test"},
		Listeners: []smtpd.ListenerConfig{{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX}},
	}, smtpd.Deps{Recipients: r, Logger: quiet})

	c := smtpdtest.Dial(t, srv, "mx")
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
