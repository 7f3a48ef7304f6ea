package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/auth"
)

// loginCookie logs user in on r's page and returns the session's cookie.
func loginCookie(t *testing.T, r *rig, user string) *http.Cookie {
	t.Helper()
	c := r.client()
	c.login(user)
	u, _ := url.Parse(r.ts.URL)
	for _, k := range c.hc.Jar.Cookies(u) {
		if k.Name == "portcullis" {
			return k
		}
	}
	t.Fatal("no session cookie after the login")
	return nil
}

// withCreds is a copy of live (its state, clock, keys and grace) reading stamps from creds.
func withCreds(live *sessions, creds Credentials) *sessions {
	return &sessions{st: live.st, creds: creds, lifetime: live.lifetime, idle: live.idle, max: live.max,
		now: live.now, log: live.log, isAdmin: live.isAdmin, keys: live.keys, grace: live.grace}
}

// stampErr is a Credentials whose reads fail with err.
type stampErr struct{ err error }

func (s stampErr) Stamp(context.Context, string) (string, error) { return "", s.err }

// The directory grace is for an outage only: a stamp read that fails for another
// reason (the directory finds the user's entry twice) says the user's state is in
// doubt, and the session is not served even just after its last check; an outage's
// failure (auth.ErrUnavailable) is served within the grace.
func TestGraceOnlyForOutage(t *testing.T) {
	r := newRig(t)
	cookie := loginCookie(t, r, "alice@example.test")
	live := r.srv.sessions
	for _, tc := range []struct {
		err   error
		serve bool
	}{
		{errors.New("auth: ldap: 2 entries match alice@example.test"), false},
		{auth.ErrUnavailable, true},
	} {
		ss := withCreds(live, stampErr{tc.err})
		req := httptest.NewRequest(http.MethodGet, "/log", nil)
		req.AddCookie(cookie)
		s, err := ss.get(req)
		if err != nil || (s != nil) != tc.serve {
			t.Errorf("stamp read failing with %q: session %v, err %v; want served %v", tc.err, s != nil, err, tc.serve)
		}
	}
}

// A negative directory_grace turns the grace off (0 is the default, 5m): an outage's
// failure is then not served even just after the session's last check.
func TestGraceOff(t *testing.T) {
	r := newRigOpts(t, rigOpts{cfg: func(c *Config) { c.DirectoryGrace = -time.Second }})
	cookie := loginCookie(t, r, "alice@example.test")
	live := r.srv.sessions
	ss := withCreds(live, stampErr{auth.ErrUnavailable})
	req := httptest.NewRequest(http.MethodGet, "/log", nil)
	req.AddCookie(cookie)
	if s, _ := ss.get(req); s != nil {
		t.Errorf("directory_grace -1s: a session was served during an outage (grace %v)", live.grace)
	}
}

// A login whose stamp cannot be read for a reason other than an outage is refused with
// its own message, not the outage page (which would send the user to wait for nothing).
func TestLoginStampInDoubt(t *testing.T) {
	r := newRig(t)
	live := r.srv.sessions
	for _, tc := range []struct {
		err  error
		want error
	}{
		{errors.New("auth: ldap: 2 entries match alice@example.test"), errAccountInDoubt},
		{auth.ErrUnavailable, errDirectory},
	} {
		ss := withCreds(live, stampErr{tc.err})
		if _, _, err := ss.create(context.Background(), "alice@example.test", false); !errors.Is(err, tc.want) {
			t.Errorf("stamp read failing with %q: create gave %v, want %v", tc.err, err, tc.want)
		}
	}
}
