// Package smtpdtest runs the real SMTP server in the tests of the packages that plug into
// it (the router's recipient validation, the users' AUTH): started on loopback, stopped
// when the test ends, with a spool that keeps nothing.
package smtpdtest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/spool"
)

// Start creates the server of cfg and deps, listens and serves until the test ends; the
// cleanup waits for Serve to return. A nil deps.Spool is Spool(nil).
func Start(tb testing.TB, cfg smtpd.Config, deps smtpd.Deps) *smtpd.Server {
	tb.Helper()
	if deps.Spool == nil {
		deps.Spool = Spool(nil)
	}
	srv, err := smtpd.New(cfg, deps)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				tb.Errorf("smtpd: Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("smtpd did not stop")
		}
	})
	return srv
}

// Dial opens an SMTP client session to the server's listener name, closed when the test
// ends.
func Dial(tb testing.TB, srv *smtpd.Server, name string) *smtp.Client {
	tb.Helper()
	c, err := smtp.Dial(srv.Addr(name).String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Spool is a smtpd.Spool that reads each message to the end and drops it, after passing
// its envelope to the function (when not nil).
type Spool func(spool.Envelope)

// Enqueue implements smtpd.Spool.
func (f Spool) Enqueue(_ context.Context, env spool.Envelope, msg io.Reader) (string, error) {
	io.Copy(io.Discard, msg)
	if f != nil {
		f(env)
	}
	return "1", nil
}
