package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/internal/statedb"
	"github.com/portcullis-mail/portcullis/quarantine"
	"github.com/portcullis-mail/portcullis/spool"
)

// rig is the page over the real collaborators: the user database with its throttle,
// the router's ownership (aliases), a spool and the quarantine with its lists.
type rig struct {
	t     *testing.T
	srv   *Server
	ts    *httptest.Server
	sp    *spool.Spool
	area  *quarantine.Area
	lists *quarantine.Lists
	log   *decisionlog.Log
	users *auth.Service
	dir   string
}

// stamps are the credential stamps of the user database: a digest of each stored hash
// (cmd/portcullis's adapter adds LDAP's users).
type stamps struct{ db *auth.DB }

func (s stamps) Stamp(ctx context.Context, user string) (string, error) {
	_, h, err := s.db.PasswordHash(ctx, user)
	if errors.Is(err, auth.ErrUnknownUser) {
		return "", ErrNoUser
	}
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(h))
	return hex.EncodeToString(sum[:8]), nil
}

// ldapStamps are the local users' stamps, then the directory's (auth.LDAP.Stamp), as
// cmd/portcullis's credentialStamps.
type ldapStamps struct {
	local stamps
	ldap  *auth.LDAP
}

func (s ldapStamps) Stamp(ctx context.Context, user string) (string, error) {
	st, err := s.local.Stamp(ctx, user)
	if !errors.Is(err, ErrNoUser) {
		return st, err
	}
	st, err = s.ldap.Stamp(ctx, user)
	if errors.Is(err, auth.ErrUnknownUser) {
		return "", ErrNoUser
	}
	return st, err
}

// record adds a decision to the log and waits until it is written; it returns its id.
func (r *rig) record(rec decisionlog.Record) int64 {
	r.t.Helper()
	ctx := context.Background()
	if rec.Time.IsZero() {
		rec.Time = time.Now().Add(-time.Hour)
	}
	r.log.Add(rec)
	if err := r.log.Flush(ctx); err != nil {
		r.t.Fatal(err)
	}
	recs, _, err := r.log.Query(ctx, decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Limit: 1})
	if err != nil || len(recs) == 0 {
		r.t.Fatalf("record not written: %v", err)
	}
	return recs[0].ID
}

const pw = "correct horse battery staple"

func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigLog(t, decisionlog.Config{})
}

// newRigLog is newRig with the decision log configured by lc (Path defaults to a
// SQLite file in the test's directory).
func newRigLog(t *testing.T, lc decisionlog.Config) *rig {
	t.Helper()
	return newRigOpts(t, rigOpts{log: lc})
}

// rigOpts change what newRigOpts builds.
type rigOpts struct {
	log decisionlog.Config
	// ldap adds a directory after the local users; the credential stamps then come
	// from it too (ldapStamps, as cmd/portcullis's adapter).
	ldap *auth.LDAPConfig
	// cfg changes the page's configuration; now replaces its clock.
	cfg func(*Config)
	now func() time.Time
}

func newRigOpts(t *testing.T, o rigOpts) *rig {
	t.Helper()
	lc := o.log
	dir := t.TempDir()
	ctx := context.Background()
	users, err := auth.Open(auth.Config{LDAP: o.ldap, Throttle: auth.ThrottleConfig{
		// Penalties longer than half a request's 30 s are answered ErrThrottled at once;
		// the sleeps of the failure delay are skipped so the test does not wait.
		FailureDelay: 10 * time.Second, MaxFailureDelay: time.Minute,
		MaxFailuresPerUser: 5, MaxFailuresPerIP: 20, Window: time.Hour,
		Sleep: func(context.Context, time.Duration) {},
	}}, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	for _, u := range []string{"alice@example.test", "bob@example.test", "admin@example.test"} {
		if err := users.DB.Add(ctx, u, pw); err != nil {
			t.Fatal(err)
		}
	}
	aliases := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliases, []byte("sales: alice\nteam: alice, bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	router, err := route.New(route.Config{LocalDomains: []string{"example.test"}, Aliases: aliases, LocalUserExists: users.Exists})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "queue"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	area, err := quarantine.New(quarantine.Config{}, sp)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := quarantine.OpenLists(ctx, statedb.Config{Path: filepath.Join(dir, "lists.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lists.Close() })
	if lc.Postgres == "" {
		lc.Path = filepath.Join(dir, "decisions.db")
	}
	dlog, err := decisionlog.Open(ctx, lc, decisionlog.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dlog.Close() })
	state, err := OpenState(ctx, statedb.Config{Path: filepath.Join(dir, "web.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	cfg := Config{Admins: []string{"admin@example.test"}, SecretFile: filepath.Join(dir, "web.secret")}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	var creds Credentials = stamps{users.DB}
	if users.LDAP != nil {
		creds = ldapStamps{stamps{users.DB}, users.LDAP}
	}
	s, err := New(cfg, Deps{Auth: users.Auth, Owner: router, Quarantine: area, Lists: lists,
		Log: dlog, Addresses: router, State: state, Credentials: creds, ListOwners: expander{router}, Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return &rig{t: t, srv: s, ts: ts, sp: sp, area: area, lists: lists, log: dlog, users: users, dir: dir}
}

// quarantine puts a message for rcpts into the quarantine and returns its queue id.
func (r *rig) quarantine(from, subject string, rcpts ...string) string {
	r.t.Helper()
	msg := "From: " + from + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@x>\r\n\r\nbody\r\n"
	id, err := r.sp.Enqueue(context.Background(), spool.Envelope{From: from, To: rcpts, Quarantine: true, Score: 9, ClientIP: "192.0.2.7", ReceivedAt: time.Now()}, strings.NewReader(msg))
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

// client is a browser: a cookie jar, no automatic redirects (tests look at them).
type client struct {
	r    *rig
	hc   *http.Client
	csrf string
}

func (r *rig) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{r: r, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) do(req *http.Request) (int, string, http.Header) {
	c.r.t.Helper()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(b); m != nil {
		c.csrf = string(m[1])
	}
	return resp.StatusCode, string(b), resp.Header
}

func (c *client) get(path string) (int, string, http.Header) {
	req, _ := http.NewRequest("GET", c.r.ts.URL+path, nil)
	return c.do(req)
}

func (c *client) post(path string, form url.Values) (int, string, http.Header) {
	req, _ := http.NewRequest("POST", c.r.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// openTicket follows a digest link as a browser does: the GET's confirmation page, then
// its button's POST. It returns the GET's answer when there is no button.
func (c *client) openTicket(tk string) (int, string, http.Header) {
	c.r.t.Helper()
	code, body, h := c.get("/ticket?t=" + url.QueryEscape(tk))
	if code != http.StatusOK || !strings.Contains(body, `action="/ticket"`) {
		return code, body, h
	}
	return c.post("/ticket", url.Values{"csrf": {c.csrf}, "t": {tk}})
}

// login logs in as user and fails the test otherwise.
func (c *client) login(user string) {
	c.r.t.Helper()
	if code, _, _ := c.get("/login"); code != 200 {
		c.r.t.Fatalf("GET /login: %d", code)
	}
	code, body, h := c.post("/login", url.Values{"csrf": {c.csrf}, "username": {user}, "password": {pw}})
	if code != http.StatusSeeOther {
		c.r.t.Fatalf("login %s: %d\n%s", user, code, body)
	}
	if loc := h.Get("Location"); loc != "/quarantine" {
		c.r.t.Fatalf("login redirects to %q", loc)
	}
	c.get("/quarantine") // picks up the session's CSRF token
}

// ticket returns a digest's ticket for user to the item (id, rcpt), valid until exp.
func (r *rig) ticket(user, id, rcpt string, exp time.Time) string {
	r.t.Helper()
	tk, err := r.srv.Ticket(context.Background(), user, id, rcpt, exp)
	if err != nil {
		r.t.Fatal(err)
	}
	return tk
}

// expander names a recipient's list owners through the real router's expansion
// (cmd/portcullis's adapter also drops the recipient delimiter's extensions).
type expander struct{ r *route.Router }

func (e expander) ListOwners(ctx context.Context, rcpt string) ([]string, error) {
	finals, err := e.r.Expand(ctx, rcpt)
	for i, f := range finals {
		finals[i] = strings.ToLower(f)
	}
	return finals, err
}
