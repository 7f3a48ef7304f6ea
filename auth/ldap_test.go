package auth

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/portcullis-mail/portcullis/auth/ldaptest"
)

// weirdUID contains every RFC 4515 filter metacharacter.
const weirdUID = `we*ird(us)er\x`

var ldapUsers = []ldaptest.User{
	{UID: "alice", Mail: "Alice@Example.TEST", Password: "alice-pw"},
	{UID: "bob", Mail: "bob@example.test", Password: "bob-pw"},
	{UID: weirdUID, Mail: "weird@example.test", Password: "weird-pw"},
	{UID: "nomail", Password: "nomail-pw"},
	{UID: "twin1", Mail: "twin@example.test", Password: "twin-pw"},
	{UID: "twin2", Mail: "twin@example.test", Password: "twin-pw"},
}

func startSlapd(t testing.TB) *ldaptest.Server {
	t.Helper()
	return ldaptest.Start(t, ldapUsers...)
}

func newLDAP(t testing.TB, srv *ldaptest.Server, mod func(*LDAPConfig)) *LDAP {
	t.Helper()
	cfg := LDAPConfig{
		URL: srv.URL, BindDN: srv.BindDN, BindPassword: srv.BindPassword,
		BaseDN:  "ou=people," + ldaptest.BaseDN,
		Filter:  "(&(objectClass=inetOrgPerson)(|(uid=%s)(mail=%s)))",
		Timeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := NewLDAP(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

var loopback = netip.MustParseAddr("127.0.0.1")

func TestLDAPSearchThenBind(t *testing.T) {
	srv := startSlapd(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		conf func(*LDAPConfig)
	}{
		{"plain", nil},
		{"starttls", func(c *LDAPConfig) { c.StartTLS = true; c.CAFile = srv.CAFile }},
		{"ldaps", func(c *LDAPConfig) { c.URL = srv.LDAPSURL; c.CAFile = srv.CAFile }},
		{"no-pool", func(c *LDAPConfig) { c.MaxIdleConns = -1 }},
		{"anonymous-search", func(c *LDAPConfig) { c.BindDN, c.BindPassword = "", "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLDAP(t, srv, tc.conf)
			for _, ok := range []struct{ user, pw, want string }{
				{"alice", "alice-pw", "alice@example.test"},
				{"alice@example.test", "alice-pw", "alice@example.test"},
				{"bob", "bob-pw", "bob@example.test"},
				{weirdUID, "weird-pw", "weird@example.test"},
				{"alice", "alice-pw", "alice@example.test"}, // again, on a pooled connection
			} {
				got, err := l.Authenticate(ctx, ok.user, ok.pw, loopback)
				if err != nil || got != ok.want {
					t.Errorf("Authenticate(%q) = %q, %v; want %q", ok.user, got, err, ok.want)
				}
			}
			for _, bad := range []struct {
				user, pw string
				want     error
			}{
				{"alice", "wrong", ErrInvalid},
				{"alice", "", ErrInvalid},           // unauthenticated bind trap
				{"nobody", "x", ErrUnknownUser},     // no entry
				{"*", "alice-pw", ErrUnknownUser},   // escaped: a literal "*"
				{"al*", "alice-pw", ErrUnknownUser}, // no substring match
				{"*)(uid=*", "alice-pw", ErrUnknownUser},
				{"alice)(|(uid=*", "alice-pw", ErrUnknownUser},
				{`we*ird(us)er\x`, "alice-pw", ErrInvalid}, // right entry, wrong password
				{"we*", "weird-pw", ErrUnknownUser},
				{"alice\x00", "alice-pw", ErrUnknownUser}, // NUL escaped, not a terminator
				{"alice\x00junk", "alice-pw", ErrUnknownUser},
				{"twin@example.test", "twin-pw", ErrInvalid}, // ambiguous: refused
				{"nomail", "nomail-pw", ErrInvalid},          // no usable address
			} {
				got, err := l.Authenticate(ctx, bad.user, bad.pw, loopback)
				if !errors.Is(err, bad.want) || got != "" {
					t.Errorf("Authenticate(%q, %q) = %q, %v; want %v", bad.user, bad.pw, got, err, bad.want)
				}
				if errors.Is(err, ErrUnavailable) {
					t.Errorf("Authenticate(%q): unexpected unavailable: %v", bad.user, err)
				}
			}
			if ok, err := l.Exists(ctx, "bob@example.test"); !ok || err != nil {
				t.Errorf("Exists(bob) = %v, %v", ok, err)
			}
			if ok, err := l.Exists(ctx, "*"); ok || err != nil {
				t.Errorf("Exists(*) = %v, %v", ok, err)
			}
		})
	}
}

func TestLDAPEmptyPasswordNeverBinds(t *testing.T) {
	srv := startSlapd(t)
	// The trap is real: the test slapd, like Active Directory, answers success to an
	// unauthenticated bind (a DN with an empty password, RFC 4513 §5.1.2).
	c, err := ldap.DialURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.UnauthenticatedBind(ldaptest.DN("alice")); err != nil {
		t.Fatalf("slapd refused the unauthenticated bind the test relies on: %v", err)
	}
	// Authenticate refuses an empty password before any bind, whatever the server does;
	// the check comes before any I/O, so even an unreachable server shows it.
	l := newLDAP(t, srv, nil)
	if _, err := l.Authenticate(context.Background(), "alice", "", loopback); !errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("empty password: %v", err)
	}
	down, err := NewLDAP(LDAPConfig{URL: "ldap://127.0.0.1:1", BaseDN: "dc=x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Authenticate(context.Background(), "alice", "", loopback); !errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("empty password, server down: %v", err)
	}
}

func TestLDAPUnavailable(t *testing.T) {
	ctx := context.Background()
	// Nothing listens on port 1.
	l, err := NewLDAP(LDAPConfig{URL: "ldap://127.0.0.1:1", BaseDN: "dc=x", Timeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Authenticate(ctx, "alice", "pw", loopback); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("down server: %v", err)
	}

	srv := startSlapd(t)
	// Wrong service password: a configuration problem, not the user's.
	l = newLDAP(t, srv, func(c *LDAPConfig) { c.BindPassword = "wrong" })
	if _, err := l.Authenticate(ctx, "alice", "alice-pw", loopback); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("bad service password: %v", err)
	}
	if err := l.Check(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check with bad service password: %v", err)
	}
	// Untrusted certificate.
	l = newLDAP(t, srv, func(c *LDAPConfig) { c.URL = srv.LDAPSURL })
	if _, err := l.Authenticate(ctx, "alice", "alice-pw", loopback); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("untrusted certificate: %v", err)
	}

	// A hung server (SIGSTOP: connections are accepted by the kernel, nothing answers)
	// fails within the timeout, and so does a pooled connection to it.
	l = newLDAP(t, srv, func(c *LDAPConfig) { c.Timeout = 500 * time.Millisecond })
	if _, err := l.Authenticate(ctx, "alice", "alice-pw", loopback); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	start := time.Now()
	_, err = l.Authenticate(ctx, "alice", "alice-pw", loopback)
	srv.Resume()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("hung server: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hung server took %v", d)
	}
	// A caller's cancellation is honoured too.
	srv.Pause()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = l.Authenticate(cctx, "alice", "alice-pw", loopback)
	cancel()
	srv.Resume()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
	// And the server recovers (a slower timeout: the resumed slapd first works through
	// the abandoned connections on a loaded machine).
	l.cfg.Timeout = 10 * time.Second
	if got, err := l.Authenticate(ctx, "bob", "bob-pw", loopback); err != nil || got != "bob@example.test" {
		t.Fatalf("after resume: %q, %v", got, err)
	}

	// The server stops: pooled connections are dead, the next attempt says unavailable.
	srv.Stop()
	if _, err := l.Authenticate(ctx, "alice", "alice-pw", loopback); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stopped server: %v", err)
	}
}

// TestLDAPServerRestart: pooled connections cut by a restart are discarded (or, when
// the cut is noticed only at the next request, retried on a fresh connection), not
// reported to the user as a failure.
func TestLDAPServerRestart(t *testing.T) {
	srv := startSlapd(t)
	ctx := context.Background()
	l := newLDAP(t, srv, func(c *LDAPConfig) { c.StartTLS, c.CAFile = true, srv.CAFile })
	// Fill the pool with several connections.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Authenticate(ctx, "alice", "alice-pw", loopback); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	srv.Restart(t)
	for i := range 6 {
		if got, err := l.Authenticate(ctx, "alice", "alice-pw", loopback); err != nil || got != "alice@example.test" {
			t.Fatalf("attempt %d after restart: %q, %v", i, got, err)
		}
	}
}

func TestLDAPConfigErrors(t *testing.T) {
	for _, cfg := range []LDAPConfig{
		{URL: "http://x", BaseDN: "dc=x"},
		{URL: "ldap://ldap.example.com", BaseDN: "dc=x"}, // plaintext to a remote host
		{URL: "ldaps://x", StartTLS: true, BaseDN: "dc=x"},
		{URL: "ldap://127.0.0.1"},
		{URL: "ldap://127.0.0.1", BaseDN: "not a dn"},
		{URL: "ldap://127.0.0.1", BaseDN: "dc=x", Filter: "(uid=alice)"},
		{URL: "ldap://127.0.0.1", BaseDN: "dc=x", Filter: "(uid=%s"},
		{URL: "ldap://127.0.0.1", BaseDN: "dc=x", BindDN: "cn=admin"},
	} {
		if _, err := NewLDAP(cfg, nil); err == nil {
			t.Errorf("NewLDAP(%+v) accepted", cfg)
		}
	}
	if _, err := NewLDAP(LDAPConfig{URL: "ldap://ldap.example.com", StartTLS: true, BaseDN: "dc=x"}, nil); err != nil {
		t.Error(err)
	}
}

func TestExpandFilter(t *testing.T) {
	got := expandFilter("(&(uid=%s)(mail=%s)(x=50%))", "a*(b)\\\x00é")
	want := `(&(uid=a\2a\28b\29\5c\00\c3\a9)(mail=a\2a\28b\29\5c\00\c3\a9)(x=50%))`
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if strings.Count(got, "(") != 4 {
		t.Fatal("injected parenthesis")
	}
}

// TestLDAPConcurrent: many attempts share a small pool; each pooled connection is left
// bound as the previous user, so wrong answers would show state leaking between
// attempts.
func TestLDAPConcurrent(t *testing.T) {
	srv := startSlapd(t)
	l := newLDAP(t, srv, func(c *LDAPConfig) { c.MaxConns, c.MaxIdleConns = 3, 2 })
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				user, pw, want := "alice", "alice-pw", "alice@example.test"
				if (g+i)%2 == 1 {
					user, pw, want = "bob", "bob-pw", "bob@example.test"
				}
				if (g+i)%3 == 0 {
					pw = "wrong"
				}
				got, err := l.Authenticate(ctx, user, pw, loopback)
				switch {
				case pw == "wrong" && (!errors.Is(err, ErrInvalid) || got != ""):
					t.Errorf("%s with a wrong password: %q, %v", user, got, err)
				case pw != "wrong" && (err != nil || got != want):
					t.Errorf("%s: %q, %v", user, got, err)
				}
			}
		}()
	}
	wg.Wait()
	if idle := l.idle.Len(); idle > 2 {
		t.Fatalf("%d idle connections, max 2", idle)
	}
}
