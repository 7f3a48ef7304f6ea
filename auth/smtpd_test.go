package auth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/auth/ldaptest"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/internal/smtpdtest"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// TestWithSMTPServer plugs the assembled Service into the real SMTP server: recipients
// are validated at RCPT (local users and the slapd directory), and submission AUTH uses
// the throttled chain.
func TestWithSMTPServer(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	dir := ldaptest.Start(t, ldaptest.User{UID: "bob", Mail: "bob@example.test", Password: "bob-pw"})
	svc, err := auth.Open(auth.Config{
		Users: auth.DBConfig{Argon2: auth.Argon2Params{Memory: 64 * bytesize.KiB}},
		LDAP: &auth.LDAPConfig{
			URL: dir.URL, StartTLS: true, CAFile: dir.CAFile, BindDN: dir.BindDN, BindPassword: dir.BindPassword,
			BaseDN: ldaptest.BaseDN, Filter: "(&(objectClass=inetOrgPerson)(|(uid=%s)(mail=%s)))",
		},
		// Short delays for the test: failed answers wait 200ms; after 2 failures from
		// the network, its next attempt starts no sooner than 400ms after the last one.
		Throttle: auth.ThrottleConfig{MaxFailuresPerIP: 2, FailureDelay: 200 * time.Millisecond, MaxFailureDelay: 2 * time.Second},
	}, t.TempDir(), quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() }) // after the server stops
	if err := svc.DB.Add(ctx, "alice@example.test", "alice-pw"); err != nil {
		t.Fatal(err)
	}

	// Recipients are validated as the server does it: the routing maps, asking the
	// users (local, then LDAP) for addresses no alias names.
	router, err := route.New(route.Config{LocalDomains: []string{"example.test"}, RecipientDelimiter: "+",
		LocalUserExists: svc.Exists, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := smtpdtest.Start(t, smtpd.Config{
		Hostname: "mx.example.test", DataDir: t.TempDir(), LocalDomains: []string{"example.test"},
		Listeners: []smtpd.ListenerConfig{
			{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX},
			{Name: "sub", Addr: "127.0.0.1:0", Mode: smtpd.ModeSubmission},
		},
	}, smtpd.Deps{Auth: svc.Auth, Recipients: router, Logger: quiet})

	c := smtpdtest.Dial(t, srv, "mx")
	if err := c.Mail("sender@example.net", nil); err != nil {
		t.Fatal(err)
	}
	for rcpt, want := range map[string]int{
		"alice@example.test": 0, "Alice+news@EXAMPLE.test": 0, "bob@example.test": 0,
		"carol@example.test": 550, "*@example.test": 550,
	} {
		err := c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		switch {
		case want == 0 && err != nil:
			t.Errorf("RCPT %s: %v", rcpt, err)
		case want != 0 && (!errors.As(err, &se) || se.Code != want || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1})):
			t.Errorf("RCPT %s: %v, want %d 5.1.1", rcpt, err, want)
		}
	}

	login := func(user, pw string) error {
		c, err := smtp.DialStartTLS(srv.Addr("sub").String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Auth(sasl.NewPlainClient("", user, pw))
	}
	if err := login("alice@example.test", "alice-pw"); err != nil {
		t.Fatalf("local user AUTH: %v", err)
	}
	if err := login("bob", "bob-pw"); err != nil {
		t.Fatalf("LDAP user AUTH: %v", err)
	}
	code := func(err error) int {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code
		}
		return 0
	}
	if err := login("bob", "guess"); code(err) != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	began := time.Now()
	if err := login("bob", "guess"); code(err) != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	// The network is over its limit: the right password still gets in, but only once
	// the penalty after the last failure has passed.
	if err := login("bob", "bob-pw"); err != nil {
		t.Fatalf("after 2 failures: %v", err)
	}
	if took := time.Since(began); took < 400*time.Millisecond {
		t.Fatalf("failure and login took %v, want the 400ms penalty", took)
	}
}
