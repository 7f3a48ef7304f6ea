package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/auth/ldaptest"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// webClient is a browser for the end-to-end tests: a cookie jar (cookies ignore the
// port, so the jar outlives a server restarted on another one), no automatic redirects,
// and the last page's CSRF token.
type webClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
}

var e2eCSRFRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func newWebClient(t *testing.T, base string) *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{t: t, base: base, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *webClient) do(method, path string, form url.Values) (int, string, http.Header) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	require.NoError(c.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := e2eCSRFRe.FindSubmatch(b); m != nil {
		c.csrf = string(m[1])
	}
	return resp.StatusCode, string(b), resp.Header
}

func (c *webClient) login(user, pass string) {
	c.t.Helper()
	code, _, _ := c.do("GET", "/login", nil)
	require.Equal(c.t, http.StatusOK, code)
	code, body, _ := c.do("POST", "/login", url.Values{"csrf": {c.csrf}, "username": {user}, "password": {pass}})
	require.Equal(c.t, http.StatusSeeOther, code, body)
}

// webServerConfig is a config with SMTP and the page, DNS from the test's server.
func webServerConfig(t *testing.T, dir string) string {
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
	})
	path := e2eConfig(t, dir, dns, `rules:
  - name: quarantine-marked
    stage: data
    if: msg.subject contains "QUARANTINE-ME"
    quarantine: true
`, "")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b = []byte(strings.Replace(string(b), `http: { addr: "" }`, `http: { addr: "127.0.0.1:0" }`, 1))
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return path
}

// TestE2EWebSessionAndDigest: through the real binary, a login to the page is kept in the
// page's database (DATA/web.db), so the server killed and started again on the same
// data directory still knows it; the digest goes as mail to the user's INBOX, and its
// link logs a fresh browser in to the quarantined message once, and only once.
func TestE2EWebSessionAndDigest(t *testing.T) {
	dir := t.TempDir()
	cfg := webServerConfig(t, dir)
	srv := startServer(t, cfg, "mx", "http")
	requireEventually(t, func() bool { return passwordRe.MatchString(srv.logText()) })
	m := passwordRe.FindStringSubmatch(srv.logText())
	user, pass := m[1], m[2]

	sc := e2eDial(t, srv.addrs["mx"], "", "client.example.net")
	stage, err := e2eSend(sc, "bank@bank.example", user, "From: bank@bank.example\r\nSubject: QUARANTINE-ME digest-e2e\r\nMessage-ID: <d1@bank.example>\r\n\r\nyour statement\r\n")
	require.NoError(t, err, stage)
	_ = sc.Quit()
	requireEventually(t, func() bool { return strings.Contains(srv.logText(), "quarantined message held") })

	c := newWebClient(t, "http://"+srv.addrs["http"])
	c.login(user, pass)
	code, _, _ := c.do("GET", "/senders", nil)
	require.Equal(t, http.StatusOK, code)
	code, _, _ = c.do("POST", "/senders", url.Values{"csrf": {c.csrf}, "action": {"digest"}, "digest": {"daily"}})
	require.Equal(t, http.StatusSeeOther, code)
	srv.kill()

	// A day passes: the digest is due when the server starts again.
	db, err := sql.Open("sqlite", filepath.Join(dir, "data", "quarantine.db"))
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE digest_prefs SET last_sent = 0`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	srv = startServer(t, cfg, "mx", "http")
	defer srv.kill()
	c.base = "http://" + srv.addrs["http"]
	code, body, h := c.do("GET", "/senders", nil)
	require.Equal(t, http.StatusOK, code, "the session after a restart: %s %s", h.Get("Location"), body)
	require.Contains(t, body, user)

	msgs := waitDelivered(t, dir, 1)
	digest := msgs[len(msgs)-1]
	require.Contains(t, digest, "Subject: Quarantine: 1 new message(s)")
	link := regexp.MustCompile(`/ticket\?t=[A-Za-z0-9_.-]+`).FindString(digest)
	require.NotEmpty(t, link, digest)
	// The link's page names the account; its button logs in (a GET spends nothing).
	open := func(wc *webClient) (int, string) {
		code, body, _ := wc.do("GET", link, nil)
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, user)
		code, body, _ = wc.do("POST", "/ticket", url.Values{"csrf": {wc.csrf}, "t": {strings.TrimPrefix(link, "/ticket?t=")}})
		return code, body
	}
	fresh := newWebClient(t, c.base)
	code, body = open(fresh)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "QUARANTINE-ME digest-e2e")
	code, _, _ = fresh.do("GET", "/quarantine", nil)
	require.Equal(t, http.StatusOK, code, "the link opened a session")
	code, body = open(newWebClient(t, c.base))
	require.Equal(t, http.StatusForbidden, code, "the link used a second time")
	require.NotContains(t, body, "QUARANTINE-ME digest-e2e")

	code, _, _ = c.do("POST", "/logout", url.Values{"csrf": {c.csrf}})
	require.Equal(t, http.StatusSeeOther, code)
	code, _, _ = c.do("GET", "/senders", nil)
	require.Equal(t, http.StatusSeeOther, code, "the page after logout")
}

// TestE2EWebSharedLogin: two portcullis processes (two nodes behind a load balancer) with
// the directory in one real PostgreSQL: a user of the shared directory logs in on one
// node's page, and the other node knows the session and its CSRF token; a change of
// their password in the directory ends it on both.
func TestE2EWebSharedLogin(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	dirdb, err := directory.OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	defer dirdb.Close()
	const user, pass = "carol@example.test", "carol's shared password"
	hash, err := auth.HashPassword(pass, auth.DefaultArgon2Params)
	require.NoError(t, err)
	require.NoError(t, dirdb.Put(ctx, directory.User{Address: user, MailHost: "node1", PasswordHash: hash}))

	// The nodes share the page's key file (web.secret_file) as they share the database.
	secret := filepath.Join(t.TempDir(), "web.secret")
	require.NoError(t, os.WriteFile(secret, []byte(strings.Repeat("9f", 32)+"\n"), 0o600))
	var nodes []*server
	for i := range 2 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
		require.NoError(t, os.MkdirAll(dir, 0o700))
		cfg := webServerConfig(t, dir)
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = fmt.Fprintf(f, "directory: { postgres: %q, cache_ttl: -1s }\nweb: { secret_file: %q }\n", dsn, secret)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		srv := startServer(t, cfg, "mx", "http")
		defer srv.kill()
		nodes = append(nodes, srv)
	}
	c := newWebClient(t, "http://"+nodes[0].addrs["http"])
	c.login(user, pass)
	c.base = "http://" + nodes[1].addrs["http"]
	code, body, _ := c.do("GET", "/senders", nil)
	require.Equal(t, http.StatusOK, code, "node 1 with node 0's session")
	require.Contains(t, body, user)
	code, _, _ = c.do("POST", "/senders", url.Values{"csrf": {c.csrf}, "action": {"block"}, "sender": {"@spam.example"}})
	require.Equal(t, http.StatusSeeOther, code, "a form on node 1")

	hash2, err := auth.HashPassword("a new password", auth.DefaultArgon2Params)
	require.NoError(t, err)
	require.NoError(t, dirdb.Put(ctx, directory.User{Address: user, MailHost: "node1", PasswordHash: hash2}))
	for _, n := range nodes {
		c.base = "http://" + n.addrs["http"]
		code, _, _ = c.do("GET", "/senders", nil)
		require.Equal(t, http.StatusSeeOther, code, "the session after the password changed in the directory")
	}
}

// TestE2EWebLDAPPasswordChange: through the real binary with the users in a real slapd,
// a password change in the directory (as ldappasswd makes it: the user's own Password
// Modify, RFC 3062) ends the user's web session at their next request; the stamp
// (auth.LDAP.Stamp) does not change between requests or with a login.
func TestE2EWebLDAPPasswordChange(t *testing.T) {
	const user, pass = "gina@example.test", "gina's old password"
	ls := ldaptest.Start(t, ldaptest.User{UID: "gina", Mail: user, Password: pass})
	dir := t.TempDir()
	cfg := webServerConfig(t, dir)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "auth:\n  ldap: { url: %q, base_dn: %q, bind_dn: %q, bind_password: %q }\n", ls.URL, ldaptest.BaseDN, ls.BindDN, ls.BindPassword)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	srv := startServer(t, cfg, "mx", "http")
	defer srv.kill()

	c := newWebClient(t, "http://"+srv.addrs["http"])
	c.login(user, pass)
	for range 2 {
		code, body, _ := c.do("GET", "/senders", nil)
		require.Equal(t, http.StatusOK, code, "the LDAP user's session")
		require.Contains(t, body, user)
	}
	// A login elsewhere (IMAP, another browser) is not a change.
	other := newWebClient(t, c.base)
	other.login(user, pass)
	code, _, _ := c.do("GET", "/senders", nil)
	require.Equal(t, http.StatusOK, code, "the session after another login")

	lc, err := ldap.DialURL(ls.URL)
	require.NoError(t, err)
	defer lc.Close()
	require.NoError(t, lc.Bind(ldaptest.DN("gina"), pass))
	_, err = lc.PasswordModify(ldap.NewPasswordModifyRequest("", pass, "gina's new password"))
	require.NoError(t, err)

	for _, wc := range []*webClient{c, other} {
		code, _, h := wc.do("GET", "/senders", nil)
		require.Equal(t, http.StatusSeeOther, code, "the session after the password changed in LDAP")
		require.True(t, strings.HasPrefix(h.Get("Location"), "/login"), h.Get("Location"))
	}
	c.login(user, "gina's new password")
	code, _, _ = c.do("GET", "/senders", nil)
	require.Equal(t, http.StatusOK, code, "a login with the new password")
}

// TestE2EWebLDAPOutage: through the real binary, with slapd stopped, an LDAP user's
// session keeps working for web.directory_grace; then the page answers 503 saying the
// directory is unavailable (not the login form, on which no password would work), and
// works again once slapd is back. The outage and its end are logged once each.
func TestE2EWebLDAPOutage(t *testing.T) {
	const user, pass = "hal@example.test", "hal's password"
	ls := ldaptest.Start(t, ldaptest.User{UID: "hal", Mail: user, Password: pass})
	dir := t.TempDir()
	cfg := webServerConfig(t, dir)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "auth:\n  ldap: { url: %q, base_dn: %q, bind_dn: %q, bind_password: %q, timeout: 2s }\nweb: { directory_grace: 20s }\n", ls.URL, ldaptest.BaseDN, ls.BindDN, ls.BindPassword)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	srv := startServer(t, cfg, "mx", "http")
	defer srv.kill()

	c := newWebClient(t, "http://"+srv.addrs["http"])
	c.login(user, pass)
	ls.Stop() // may take seconds on a loaded machine: the grace leaves room for it
	code, body, h := c.do("GET", "/senders", nil)
	require.Equal(t, http.StatusOK, code, "within the grace, slapd stopped: %s %s", h.Get("Location"), body)
	requireEventually(t, func() bool {
		code, body, h = c.do("GET", "/senders", nil)
		return code != http.StatusOK
	})
	require.Equal(t, http.StatusServiceUnavailable, code, "past the grace: %s %s", h.Get("Location"), body)
	require.Contains(t, body, "The user directory is unavailable")
	require.NotContains(t, body, `name="password"`)
	require.NotEmpty(t, h.Get("Retry-After"))

	ls.Restart(t)
	requireEventually(t, func() bool { code, _, _ = c.do("GET", "/senders", nil); return code == http.StatusOK })
	// The server logs before it answers, but its stderr reaches the log buffer through a
	// pipe and a reader goroutine: wait for the line rather than read the buffer at once.
	requireEventually(t, func() bool { return strings.Contains(srv.logText(), "the user directory answers again") })
	logs := srv.logText()
	require.Equal(t, 1, strings.Count(logs, "the user directory is unavailable:"), logs)
	require.Equal(t, 1, strings.Count(logs, "the user directory answers again"), logs)
}
