package smtpd_test

import (
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/ratelimit"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

func withLimits(t *testing.T, cfg ratelimit.Config) func(*smtpd.Config, *smtpd.Deps) {
	return func(c *smtpd.Config, d *smtpd.Deps) {
		lim, err := ratelimit.New(cfg, ratelimit.Deps{Hostname: c.Hostname, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		d.Limiter = lim
	}
}

// TestRateLimits: each of Postfix's anvil limits answers Postfix's reply once exceeded,
// for the flooding address only; another address is served.
func TestRateLimits(t *testing.T) {
	ts := start(t, withLimits(t, ratelimit.Config{ClientConnectionRateLimit: 3, ClientMessageRateLimit: 2, ClientRecipientRateLimit: 3}))
	mx := ts.addr("mx")
	c := dialFrom(t, mx, 5)
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.example", 250)
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	c.Expect(t, "RCPT TO:<u1@example.test>", 250)
	c.Expect(t, "RCPT TO:<u2@example.test>", 250)
	c.Expect(t, "RCPT TO:<u3@example.test>", 250)
	if r := c.Expect(t, "RCPT TO:<u4@example.test>", 450); !r.Has("4.7.1 Error: too many recipients from 127.0.0.5") {
		t.Errorf("recipient rate: %s", r)
	}
	c.Expect(t, "RSET", 250)
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	if r := c.Expect(t, "MAIL FROM:<b@remote.example>", 450); !r.Has("4.7.1 Error: too much mail from 127.0.0.5") {
		t.Errorf("message rate: %s", r)
	}
	// Two more connections are within the rate of 3; the fourth is refused at once.
	for i := 0; i < 2; i++ {
		dialFrom(t, mx, 5).Expect(t, "", 220)
	}
	if r := dialFrom(t, mx, 5).Expect(t, "", 421); !r.Has("4.7.0 mx.example.test Error: too many connections from 127.0.0.5") {
		t.Errorf("connection rate: %s", r)
	}
	// Another client is served normally.
	o := dialFrom(t, mx, 6)
	o.Expect(t, "", 220)
	o.Expect(t, "EHLO other.example", 250)
	o.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	o.Expect(t, "RCPT TO:<u1@example.test>", 250)
}

// TestRateLimitExceptions: networks in event_limit_exceptions are never counted.
func TestRateLimitExceptions(t *testing.T) {
	ts := start(t, withLimits(t, ratelimit.Config{ClientConnectionRateLimit: 1, ClientMessageRateLimit: 1, EventLimitExceptions: []string{"127.0.0.7/32"}}))
	for i := 0; i < 3; i++ {
		c := dialFrom(t, ts.addr("mx"), 7)
		c.Expect(t, "", 220)
		c.Expect(t, "EHLO client.example", 250)
		c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	}
}

// TestTLSAndAuthRates: new TLS sessions on the implicit-TLS port and AUTH commands.
func TestTLSAndAuthRates(t *testing.T) {
	ts := start(t, withLimits(t, ratelimit.Config{ClientNewTLSSessionRateLimit: 1, ClientAuthRateLimit: 1}))
	c, err := smtptest.DialTLS(ts.addr("submissions"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.example", 250)
	c.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==", 535)
	if r := c.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==", 450); !r.Has("4.7.1 Error: too many AUTH commands from 127.0.0.1") {
		t.Errorf("auth rate: %s", r)
	}
	c2, err := smtptest.DialTLS(ts.addr("submissions"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if r := c2.Expect(t, "", 421); !r.Has("4.7.0 mx.example.test Error: too many new TLS sessions from 127.0.0.1") {
		t.Errorf("tls rate: %s", r)
	}
}

// TestSTARTTLSRate: a new TLS session through STARTTLS counts too; past the limit the
// EHLO that follows the handshake gets 421 and the session ends.
func TestSTARTTLSRate(t *testing.T) {
	ts := start(t, withLimits(t, ratelimit.Config{ClientNewTLSSessionRateLimit: 1}))
	for i, want := range []int{250, 421} {
		c := dial(t, ts.addr("submission"))
		c.Expect(t, "EHLO client.example", 250)
		if err := c.StartTLS(); err != nil {
			t.Fatal(err)
		}
		r := c.Expect(t, "EHLO client.example", want)
		if i == 1 {
			if !r.Has("4.7.0 mx.example.test Error: too many new TLS sessions from 127.0.0.1") {
				t.Errorf("STARTTLS rate: %s", r)
			}
			if r, err := c.Cmd("NOOP"); err == nil {
				t.Errorf("the session goes on after 421: %s", r)
			}
		}
	}
}

// TestRateLimitRecorded: every refusal of a limit reaches the decision log: the
// connection pool's and the connection rate's 421 at connect (no session exists yet),
// and the MAIL and RCPT rates' 450, each with the limit as its category.
func TestRateLimitRecorded(t *testing.T) {
	rec := &recorder{}
	ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		withLimits(t, ratelimit.Config{ClientConnectionRateLimit: 2, ClientMessageRateLimit: 1, ClientRecipientRateLimit: 1})(c, d)
		c.Listeners[0].MaxConnectionsPerIP = 1
		d.Decisions = rec
	})
	c := dialFrom(t, ts.addr("mx"), 7)
	c.Expect(t, "", 220)
	// The mx listener's per-address pool is full while c is open (not counted by the
	// rate); the submission listener has room, and the rate of 2 refuses the third.
	dialFrom(t, ts.addr("mx"), 7).Expect(t, "", 421)
	dialFrom(t, ts.addr("submission"), 7).Expect(t, "", 220)
	dialFrom(t, ts.addr("submission"), 7).Expect(t, "", 421)
	c.Expect(t, "EHLO client.example", 250)
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	c.Expect(t, "RCPT TO:<u1@example.test>", 250)
	c.Expect(t, "RCPT TO:<u2@example.test>", 450)
	c.Expect(t, "RSET", 250)
	c.Expect(t, "MAIL FROM:<a@remote.example>", 450)
	want := []string{
		"at=connect stage=connect verdict=tempfail rule= category=connection_limit rcpts= from= subject=\"\" queued=false msg=false size=false reply=421 4.7.0 mx.example.test Too many connections (per-address limit), try again later",
		"at=connect stage=connect verdict=tempfail rule= category=rate_limit rcpts= from= subject=\"\" queued=false msg=false size=false reply=421 4.7.0 mx.example.test Error: too many connections from 127.0.0.7",
		"at=rcpt stage=rcpt verdict=tempfail rule= category=rate_limit rcpts=u2@example.test from=a@remote.example subject=\"\" queued=false msg=false size=false reply=450 4.7.1 Error: too many recipients from 127.0.0.7",
		"at=mail stage=mail verdict=tempfail rule= category=rate_limit rcpts= from= subject=\"\" queued=false msg=false size=false reply=450 4.7.1 Error: too much mail from 127.0.0.7",
	}
	got := rec.take()
	if len(got) != len(want) {
		t.Fatalf("records:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}
