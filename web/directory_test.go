package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/auth/ldaptest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/statedb"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// fakeClock is the page's clock in a test: it moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// newLDAPRig is the rig with the real slapd of ldaptest as the directory after the
// local users, the page's clock fake and its log in logs.
func newLDAPRig(t *testing.T, srv *ldaptest.Server, clock *fakeClock, logs *testenv.LockedBuffer) *rig {
	return newRigOpts(t, rigOpts{
		ldap: &auth.LDAPConfig{
			URL: srv.URL, BindDN: srv.BindDN, BindPassword: srv.BindPassword,
			BaseDN: "ou=people," + ldaptest.BaseDN, Filter: "(&(objectClass=inetOrgPerson)(|(uid=%s)(mail=%s)))",
			Timeout: 2 * time.Second,
		},
		now: clock.Now,
		cfg: func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) },
	})
}

// directoryDownPage checks an answer is the 503 page of a directory outage: escaped
// text, a Retry-After, no login form (no password would work) and no stack trace.
func directoryDownPage(t *testing.T, what string, code int, body string, h http.Header) {
	t.Helper()
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("%s: %d (Retry-After %q), want 503 with Retry-After\n%s", what, code, h.Get("Retry-After"), body)
	}
	if !strings.Contains(body, "The user directory is unavailable") || strings.Contains(body, `name="password"`) || strings.Contains(body, "goroutine") {
		t.Errorf("%s: not the directory-unavailable page:\n%s", what, body)
	}
}

// An LDAP outage (the real slapd stopped) does not throw users out to a login form
// that cannot work: a session whose stamp was verified keeps working for the grace,
// then gets a 503 page saying the directory is down (and so does a new login); the
// outage is logged once, and its end once, though a local user's pages succeed in
// between. When slapd is back the checks resume: the
// session of a user whose password was changed while it was down (slapmodify on the
// stopped database) ends; the other's works again.
func TestDirectoryOutageGrace(t *testing.T) {
	srv := ldaptest.Start(t,
		ldaptest.User{UID: "carol", Mail: "carol@example.test", Password: pw},
		ldaptest.User{UID: "dave", Mail: "dave@example.test", Password: pw},
		ldaptest.User{UID: "erin", Mail: "erin@example.test", Password: pw})
	clock := &fakeClock{now: time.Now()}
	var logs testenv.LockedBuffer
	r := newLDAPRig(t, srv, clock, &logs)
	carol, dave, alice := r.client(), r.client(), r.client()
	carol.login("carol@example.test")
	dave.login("dave@example.test")
	alice.login("alice@example.test") // a local user: her checks succeed during the outage
	item := r.quarantine("x@spam.test", "outage", "carol@example.test")
	tk := r.ticket("carol@example.test", item, "carol@example.test", time.Now().Add(time.Hour))

	srv.Stop()
	clock.Advance(time.Minute)
	for _, c := range []*client{carol, alice, dave, alice} {
		if code, body, h := c.get("/log"); code != http.StatusOK {
			t.Fatalf("within the grace, the directory down: %d %s\n%s", code, h.Get("Location"), body)
		}
	}
	// A form too: the session, its CSRF token and the page work unchecked.
	if code, body, _ := carol.post("/senders", url.Values{"csrf": {carol.csrf}, "action": {"digest"}, "digest": {"daily"}}); code != http.StatusSeeOther {
		t.Errorf("a form within the grace: %d\n%s", code, body)
	}
	erin := r.client()
	if code, _, _ := erin.get("/login"); code != http.StatusOK {
		t.Fatalf("GET /login: %d", code)
	}
	code, body, h := erin.post("/login", url.Values{"csrf": {erin.csrf}, "username": {"erin@example.test"}, "password": {pw}})
	directoryDownPage(t, "a new login, the directory down", code, body, h)
	code, body, h = r.client().get("/ticket?t=" + url.QueryEscape(tk))
	directoryDownPage(t, "a digest link, the directory down", code, body, h)

	// The grace counts from the last successful check (the login), not from the outage.
	clock.Advance(DefaultDirectoryGrace)
	code, body, h = carol.get("/log")
	directoryDownPage(t, "past the grace", code, body, h)
	if code, _, _ := alice.get("/log"); code != http.StatusOK {
		t.Errorf("the local user during the LDAP outage: %d", code)
	}
	code, body, h = carol.get("/login")
	directoryDownPage(t, "the login page with a session past the grace", code, body, h)
	if n := r.srv.sessions.count(context.Background()); n != 3 {
		t.Errorf("%d sessions in the table, want 3: an outage ends none", n)
	}

	srv.SetPasswordOffline(t, "carol", "changed while the directory was down")
	srv.Restart(t)
	clock.Advance(probeEvery)
	if code, _, h := carol.get("/log"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Errorf("carol's session after her password changed during the outage: %d %q, want the login page", code, h.Get("Location"))
	}
	if code, body, _ := dave.get("/log"); code != http.StatusOK {
		t.Errorf("dave's session once the directory is back: %d\n%s", code, body)
	}
	text := logs.String()
	if n := strings.Count(text, "the user directory is unavailable:"); n != 1 {
		t.Errorf("the outage logged %d times, want once:\n%s", n, text)
	}
	if n := strings.Count(text, "the user directory answers again"); n != 1 {
		t.Errorf("the end of the outage logged %d times, want once:\n%s", n, text)
	}
}

// While the directory is down, the requests within probeEvery of the last attempt do
// not ask it (each would wait for its timeout when it drops packets): the real slapd
// paused (SIGSTOP) answers nothing, and a second page in the same instant is served at
// once from the grace.
func TestDirectoryOutageProbesOnce(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.User{UID: "carol", Mail: "carol@example.test", Password: pw})
	clock := &fakeClock{now: time.Now()}
	var logs testenv.LockedBuffer
	r := newLDAPRig(t, srv, clock, &logs)
	carol := r.client()
	carol.login("carol@example.test")
	srv.Pause()
	t.Cleanup(srv.Resume)
	if code, _, _ := carol.get("/log"); code != http.StatusOK {
		t.Fatalf("first page, the directory paused: %d", code)
	}
	start := time.Now()
	if code, _, _ := carol.get("/log"); code != http.StatusOK {
		t.Fatalf("second page: %d", code)
	}
	// Asking the paused directory again would take its whole timeout (2 s).
	d := time.Since(start)
	t.Logf("the second page, the directory paused: %v", d)
	if d >= 2*time.Second {
		t.Errorf("the second page took %v: it asked the paused directory again", d)
	}
}

// A state database of a version without the column checked, SQLite or PostgreSQL, gets
// it at start, and its sessions keep working.
func TestStateAddsCheckedColumn(t *testing.T) {
	ctx := context.Background()
	oldSQLite := strings.Replace(stateSQLite, ",\n\tchecked INTEGER NOT NULL DEFAULT 0", "", 1)
	oldPostgres := strings.Replace(strings.Replace(statePostgres, ",\n\tchecked BIGINT NOT NULL DEFAULT 0", "", 1),
		"ALTER TABLE web_sessions ADD COLUMN IF NOT EXISTS checked BIGINT NOT NULL DEFAULT 0;\n", "", 1)
	if oldSQLite == stateSQLite || oldPostgres == statePostgres || strings.Contains(oldPostgres, "checked") {
		t.Fatal("the schema has no checked column to remove")
	}
	for _, c := range []struct {
		name string
		cfg  func() statedb.Config
	}{
		{"sqlite", func() statedb.Config { return statedb.Config{Path: filepath.Join(t.TempDir(), "web.db")} }},
		{"postgres", func() statedb.Config { return statedb.Config{Postgres: pgtest.NewDatabase(t, pgtest.Start(t))} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg()
			old, err := statedb.Open(ctx, cfg, statedb.Schema{SQLite: oldSQLite, Postgres: oldPostgres, Lock: 0x706f7274_77656231})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now().Unix()
			if _, err := old.Exec(ctx, `INSERT INTO web_sessions (id, "user", admin, csrf, stamp, created, used) VALUES ('x', 'u', 0, '', 's', ?, ?)`, now, now); err != nil {
				t.Fatal(err)
			}
			old.Close()
			for range 2 { // and a second start finds it there
				st, err := OpenState(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				var checked int64
				if err := st.db.QueryRow(ctx, `SELECT checked FROM web_sessions WHERE id = 'x'`).Scan(&checked); err != nil || checked != 0 {
					t.Errorf("checked %d, %v", checked, err)
				}
				st.Close()
			}
		})
	}
}
