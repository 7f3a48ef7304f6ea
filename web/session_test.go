package web

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/statedb"
)

// TestOneUserCannotFillTheSessions: logging in over and over ends the same user's older
// sessions instead of filling the table, so other users can still log in.
func TestOneUserCannotFillTheSessions(t *testing.T) {
	ctx := context.Background()
	st, err := OpenState(ctx, statedb.Config{Path: filepath.Join(t.TempDir(), "web.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Unix(1e9, 0)
	k, err := parseKeys("test", []byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	ss := &sessions{st: st, lifetime: time.Hour, idle: time.Hour, max: 100, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler), keys: k}
	var first *session
	for i := range 100 {
		now = now.Add(time.Second)
		s, _, err := ss.create(ctx, "alice@example.test", false)
		if err != nil {
			t.Fatalf("alice's login %d: %v", i, err)
		}
		if first == nil {
			first = s
		}
	}
	if n := ss.count(ctx); n > 20 {
		t.Errorf("%d sessions alive for one user, want at most 20", n)
	}
	var n int
	if err := st.db.QueryRow(ctx, `SELECT count(*) FROM web_sessions WHERE id = ?`, first.id).Scan(&n); err != nil || n != 0 {
		t.Errorf("alice's least recently used session survived (%d, %v)", n, err)
	}
	for i := range 50 {
		if _, _, err := ss.create(ctx, fmt.Sprintf("user%d@example.test", i), false); err != nil {
			t.Fatalf("another user's login after alice's flood: %v", err)
		}
	}
}

// sessionCookie returns the client's session cookie.
func (c *client) sessionCookie() *http.Cookie {
	u, _ := url.Parse(c.r.ts.URL)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == "portcullis" {
			return ck
		}
	}
	c.r.t.Fatal("no session cookie")
	return nil
}

// A session is kept in the database, hashed: a second server over the same file (the
// process restarted) knows it, and the table holds no token that would log anyone in.
func TestSessionSurvivesRestart(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice@example.test")
	tok := c.sessionCookie().Value
	var stored string
	if err := r.srv.deps.State.db.QueryRow(context.Background(), `SELECT id FROM web_sessions`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == tok || strings.Contains(stored, tok) {
		t.Error("the session's token is stored as is")
	}
	s2 := r.restarted(Config{})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/senders", nil)
	req.AddCookie(&http.Cookie{Name: "portcullis", Value: tok})
	s2.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "alice@example.test") {
		t.Fatalf("the session after a restart: %d", rec.Code)
	}
}

// A password change, by this process or another (`portcullis user passwd`), ends the
// user's sessions; so does deleting the user. Other users' sessions live on.
func TestCredentialChangeEndsSessions(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	alice, alice2, bob := r.client(), r.client(), r.client()
	alice.login("alice@example.test")
	alice2.login("alice@example.test")
	bob.login("bob@example.test")
	if err := r.users.DB.SetPassword(ctx, "alice@example.test", "a new password of hers"); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*client{alice, alice2} {
		if code, _, h := c.get("/senders"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
			t.Errorf("alice's session %d after her password changed: %d", i, code)
		}
	}
	var n int
	if err := r.srv.deps.State.db.QueryRow(ctx, `SELECT count(*) FROM web_sessions WHERE "user" = 'alice@example.test'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d sessions of alice left in the table (%v)", n, err)
	}
	if code, _, _ := bob.get("/senders"); code != http.StatusOK {
		t.Errorf("bob's session after alice's change: %d", code)
	}
	if err := r.users.DB.Delete(ctx, "bob@example.test"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := bob.get("/senders"); code != http.StatusSeeOther {
		t.Errorf("bob's session after his deletion: %d", code)
	}
}

// Two pages (two nodes) on one PostgreSQL database share a login: a session opened on
// one is valid on the other, a logout on the other ends it on both.
func TestSessionsSharedOnPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	r := newRig(t)
	ctx := context.Background()
	// The nodes share the key file as they share the database; a node without it does
	// not start (a key of its own would refuse the others' links and forms).
	secret := filepath.Join(t.TempDir(), "web.secret")
	if st, err := OpenState(ctx, statedb.Config{Postgres: dsn}); err != nil {
		t.Fatal(err)
	} else {
		_, err := New(Config{SecretFile: secret}, Deps{Auth: r.srv.deps.Auth, Owner: r.srv.deps.Owner, State: st})
		st.Close()
		if err == nil || !strings.Contains(err.Error(), "every node needs the same file") {
			t.Fatalf("a PostgreSQL node without the key file: %v", err)
		}
		if _, err := os.Stat(secret); !os.IsNotExist(err) {
			t.Fatalf("the node made a key file of its own: %v", err)
		}
	}
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 4)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A key an older version kept in the shared tables is deleted at the first start.
	if st, err := OpenState(ctx, statedb.Config{Postgres: dsn}); err != nil {
		t.Fatal(err)
	} else {
		_, err := st.db.Exec(ctx, `INSERT INTO web_keys (name, key) VALUES ('ticket', ?)`, strings.Repeat("ab", 32))
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	var nodes []*httptest.Server
	for range 2 {
		st, err := OpenState(ctx, statedb.Config{Postgres: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		s, err := New(Config{SecretFile: secret}, Deps{Auth: r.srv.deps.Auth, Owner: r.srv.deps.Owner, Quarantine: r.area, Lists: r.lists, State: st, Credentials: stamps{r.users.DB}})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s)
		t.Cleanup(ts.Close)
		nodes = append(nodes, ts)
	}
	// The client logs in on node 0 and then talks to node 1, as through a load balancer.
	r.ts = nodes[0]
	c := r.client()
	c.login("alice@example.test")
	r.ts = nodes[1]
	code, body, _ := c.get("/senders")
	if code != http.StatusOK || !strings.Contains(body, "alice@example.test") {
		t.Fatalf("node 1 with node 0's session: %d", code)
	}
	// A form on node 1 with the CSRF token node 0 gave: the same session.
	if code, _, _ := c.post("/senders", url.Values{"csrf": {c.csrf}, "action": {"block"}, "sender": {"x@spam.test"}}); code != http.StatusSeeOther {
		t.Fatalf("a form on node 1: %d", code)
	}
	cookie := c.sessionCookie()
	if code, _, _ := c.post("/logout", url.Values{"csrf": {c.csrf}}); code != http.StatusSeeOther {
		t.Fatalf("logout on node 1: %d", code)
	}
	r.ts = nodes[0]
	req, _ := http.NewRequest("GET", r.ts.URL+"/senders", nil)
	req.AddCookie(cookie)
	if code, _, _ := r.client().do(req); code != http.StatusSeeOther {
		t.Errorf("node 0 after the logout on node 1: %d", code)
	}
	// The database holds the sessions, hashed, not in any process.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM web_keys WHERE name = 'ticket' OR key = $1`, strings.Repeat("0123456789abcdef", 4)).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d keys in PostgreSQL (%v)", n, err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM web_sessions`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d sessions in PostgreSQL after the logout (%v)", n, err)
	}
}

// The admin role is the configuration's: a session kept in the database across a
// restart, or read by another node, loses it once its user is no longer in admins (the
// sessions outlive the process that made them, so the role is checked at each request).
func TestAdminRemovedLosesRoleAfterRestart(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("admin@example.test")
	tok := c.sessionCookie().Value
	serve := func(s *Server) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/admin/quarantine", nil)
		req.AddCookie(&http.Cookie{Name: "portcullis", Value: tok})
		s.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := serve(r.srv); code != http.StatusOK {
		t.Fatalf("the admin's page: %d", code)
	}
	if code := serve(r.restarted(Config{})); code != http.StatusForbidden {
		t.Errorf("a former admin's session after the restart: %d, want 403", code)
	}
}

// restarted is the rig's page after a restart with cfg: a new Server and a new
// connection to the same state database.
func (r *rig) restarted(cfg Config) *Server {
	r.t.Helper()
	st2, err := OpenState(context.Background(), statedb.Config{Path: filepath.Join(r.dir, "web.db")})
	if cfg.SecretFile == "" {
		cfg.SecretFile = r.srv.cfg.SecretFile
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { st2.Close() })
	s2, err := New(cfg, Deps{Auth: r.srv.deps.Auth, Owner: r.srv.deps.Owner, Quarantine: r.area, Lists: r.lists, State: st2, Credentials: stamps{r.users.DB}})
	if err != nil {
		r.t.Fatal(err)
	}
	return s2
}
