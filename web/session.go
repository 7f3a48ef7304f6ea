package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/internal/statedb"
)

// session is a logged-in user's state, kept on the server (State); the cookie holds
// only a random token, and the database only its hash (id).
type session struct {
	id      string // hashToken of the cookie's token
	user    string
	admin   bool
	csrf    string
	stamp   string // the user's credential stamp at login
	created time.Time
	used    time.Time
	// checked is when the stamp was last read and matched (to within touchEvery): the
	// start of the grace a directory outage gets (sessions.grace).
	checked time.Time
	// flash is what the last form did, shown once by the page it redirects to. It is
	// kept here, not in the URL, so a link cannot put words in the page's mouth.
	flash string
}

// sessions are the sessions in the state database, with the page's limits.
type sessions struct {
	st       *State
	creds    Credentials // nil: sessions are not checked against the user database
	lifetime time.Duration
	idle     time.Duration
	max      int
	now      func() time.Time
	log      interface {
		Warn(string, ...any)
		Info(string, ...any)
	}
	// isAdmin says whether the configuration makes user an admin now: a session
	// outlives the process that opened it, and keeps the role only while it does.
	isAdmin func(user string) bool
	keys    *keys // derive the sessions' CSRF tokens
	// grace is how long after its last successful stamp check a session keeps working
	// while the stamp cannot be read (Config.DirectoryGrace).
	grace time.Duration

	mu        sync.Mutex
	lastPrune time.Time
	addrs     map[string]addrEntry // by user
	// failing are the users whose last stamp read failed temporarily (the directory
	// down), each with when a request may ask for it again (see readStamp).
	failing map[string]time.Time
}

type addrEntry struct {
	addrs []string
	exp   time.Time
}

// addrTTL is how long a user's addresses are remembered: an alias added is seen within it.
const addrTTL = time.Minute

// touchEvery is how stale a session's last use may be before a request writes it: a
// page of several requests writes once, and an idle timeout is early by at most this.
const touchEvery = time.Minute

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// errFull is returned when MaxSessions sessions are alive: a flood of logins cannot grow
// the table without end.
var errFull = errors.New("too many sessions; try again later")

// errUnavailable is returned when the state database cannot be reached.
var errUnavailable = errors.New("the session database is unavailable; try again later")

// errDirectory is returned when the user directory (LDAP, the user database) cannot be
// asked for a user's credential stamp and the session's grace has run out, or for a new
// login: the page answers 503 with it, not the login form, which cannot work then.
var errDirectory = errors.New("web: the user directory is unavailable")

// directoryDownMsg is the 503 page's text.
const directoryDownMsg = "The user directory is unavailable, so your login cannot be checked. Try again in a few minutes."

// DefaultDirectoryGrace is how long a session whose credential stamp was verified keeps
// working while the user directory is unavailable, when Config.DirectoryGrace is zero.
const DefaultDirectoryGrace = 5 * time.Minute

// probeEvery is how often, while the directory is down, one request asks it again; the
// others meanwhile take the grace path at once instead of each waiting for the
// directory's timeout (a directory that drops packets makes every read wait for it).
const probeEvery = 5 * time.Second

// maxUserSessions bounds one user's sessions: a login beyond it ends their least recently
// used one. Without it one account (its password, or a stolen digest ticket) could fill
// MaxSessions and lock every other user out.
const maxUserSessions = 20

// errAccountInDoubt refuses a login whose credential stamp could not be read for a
// reason of the user's own (the directory finds their entry twice), not an outage: the
// page says so without the directory's words, which readStamp logs.
var errAccountInDoubt = errors.New("web: the account's credential stamp cannot be read")

// create opens a session for user and returns it with the cookie's token.
func (ss *sessions) create(ctx context.Context, user string, admin bool) (*session, string, error) {
	stamp := ""
	if ss.creds != nil {
		var err error
		if stamp, err = ss.readStamp(ctx, user); err != nil {
			if isOutage(err) {
				return nil, "", errDirectory
			}
			return nil, "", errAccountInDoubt // readStamp logged the detail
		}
	}
	now := ss.now()
	ss.maybePrune(ctx, now)
	tok := randomToken()
	s := &session{id: hashToken(tok), user: user, admin: admin, csrf: ss.keys.csrfToken(tok), stamp: stamp, created: now, used: now, checked: now}
	adm := 0
	if admin {
		adm = 1
	}
	err := ss.st.db.Tx(ctx, func(tx *statedb.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM web_sessions WHERE "user" = ?`, user).Scan(&n); err != nil {
			return err
		}
		if n >= maxUserSessions {
			if _, err := tx.Exec(ctx, `DELETE FROM web_sessions WHERE id IN (SELECT id FROM web_sessions WHERE "user" = ? ORDER BY used LIMIT ?)`,
				user, n-maxUserSessions+1); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM web_sessions`).Scan(&n); err != nil {
			return err
		}
		if n >= ss.max {
			if _, err := ss.pruneIn(ctx, tx, now); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM web_sessions`).Scan(&n); err != nil {
				return err
			}
			if n >= ss.max {
				return errFull
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO web_sessions (id, "user", admin, csrf, stamp, created, used, checked) VALUES (?, ?, ?, '', ?, ?, ?, ?)`,
			s.id, user, adm, stamp, now.Unix(), now.Unix(), now.Unix())
		return err
	})
	if errors.Is(err, errFull) {
		return nil, "", err
	}
	if err != nil {
		ss.log.Warn("web: creating a session failed", "user", user, "err", err.Error())
		return nil, "", errUnavailable
	}
	return s, tok, nil
}

// pruneIn deletes the expired sessions and used tickets.
func (ss *sessions) pruneIn(ctx context.Context, tx *statedb.Tx, now time.Time) (int64, error) {
	res, err := tx.Exec(ctx, `DELETE FROM web_sessions WHERE created < ? OR used < ?`,
		now.Add(-ss.lifetime).Unix(), now.Add(-ss.idle).Unix())
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM web_tickets_used WHERE expires < ?`, now.Unix()); err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// maybePrune prunes at most once a minute per process; a login is the occasion (the
// table grows only by logins).
func (ss *sessions) maybePrune(ctx context.Context, now time.Time) {
	ss.mu.Lock()
	due := now.Sub(ss.lastPrune) >= time.Minute
	if due {
		ss.lastPrune = now
	}
	ss.mu.Unlock()
	if !due {
		return
	}
	if err := ss.st.db.Tx(ctx, func(tx *statedb.Tx) error { _, err := ss.pruneIn(ctx, tx, now); return err }); err != nil {
		ss.log.Warn("web: pruning sessions failed", "err", err.Error())
	}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.created) > ss.lifetime || now.Sub(s.used) > ss.idle
}

// get returns the request's live session, or nil. A session whose user no longer
// exists, or whose password changed since the login, has ended: it is deleted, with the
// user's other sessions of before the change.
//
// When the stamp cannot be read (the directory is down), a session whose stamp matched
// within the last grace keeps working unchecked: an outage does not lock out the admin
// who needs the page then. It is not extended: checked moves only when a read matches,
// so a password changed during the outage still ends the session at the first read
// that succeeds. Past the grace get returns errDirectory, which the caller answers with
// a 503 page (the session is kept for when the directory is back).
func (ss *sessions) get(r *http.Request) (*session, error) {
	c, err := r.Cookie(cookieName(r))
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	ctx := r.Context()
	s := &session{id: hashToken(c.Value), csrf: ss.keys.csrfToken(c.Value)}
	var adm int
	var created, used, checked int64
	err = ss.st.db.QueryRow(ctx, `SELECT "user", admin, stamp, created, used, checked, flash FROM web_sessions WHERE id = ?`, s.id).
		Scan(&s.user, &adm, &s.stamp, &created, &used, &checked, &s.flash)
	if err != nil {
		if !errors.Is(err, errNoRows) {
			ss.log.Warn("web: reading a session failed", "err", err.Error())
		}
		return nil, nil
	}
	s.admin, s.created, s.used, s.checked = adm == 1 && ss.isAdmin != nil && ss.isAdmin(s.user), time.Unix(created, 0), time.Unix(used, 0), time.Unix(checked, 0)
	now := ss.now()
	if ss.expired(s, now) {
		ss.delete(ctx, s.id)
		return nil, nil
	}
	verified := false
	if ss.creds != nil {
		stamp, err := ss.readStamp(ctx, s.user)
		switch {
		case errors.Is(err, ErrNoUser):
			ss.endUser(ctx, s.user, "")
			return nil, nil
		case err != nil && !isOutage(err):
			// Not an outage (the directory finds the user twice, say): the user's
			// state is in doubt, so the session is not served, grace or not.
			return nil, nil
		case err != nil && now.Sub(s.checked) <= ss.grace:
			// Unchecked, within the grace.
		case err != nil:
			return nil, errDirectory
		case stamp != s.stamp:
			ss.endUser(ctx, s.user, stamp)
			return nil, nil
		default:
			verified = true
		}
	}
	switch {
	case verified && now.Sub(s.checked) >= touchEvery:
		if _, err := ss.st.db.Exec(ctx, `UPDATE web_sessions SET used = ?, checked = ? WHERE id = ?`, now.Unix(), now.Unix(), s.id); err != nil {
			ss.log.Warn("web: recording a session's use failed", "err", err.Error())
		}
		s.used, s.checked = now, now
	case now.Sub(s.used) >= touchEvery:
		if _, err := ss.st.db.Exec(ctx, `UPDATE web_sessions SET used = ? WHERE id = ?`, now.Unix(), s.id); err != nil {
			ss.log.Warn("web: recording a session's use failed", "err", err.Error())
		}
		s.used = now
	}
	return s, nil
}

// readStamp reads user's credential stamp.
//
// A temporary failure (the directory or the user database cannot be asked:
// auth.ErrUnavailable) puts the user in failing until a read of theirs succeeds; the
// directory counts as down while failing is not empty, which is logged once when it
// starts and once when it ends. The state is by user, not global, because the users may
// live in several backends (local users before LDAP): a local user's page during an LDAP
// outage says nothing about LDAP, and must not make the log flap. While a user is in
// failing, one request of theirs per probeEvery asks again and the others fail at once.
// Other failures (an entry the directory finds twice) are the user's alone and logged
// each time.
func (ss *sessions) readStamp(ctx context.Context, user string) (string, error) {
	ss.mu.Lock()
	if next, ok := ss.failing[user]; ok {
		now := ss.now()
		if now.Before(next) {
			ss.mu.Unlock()
			return "", errDirectory
		}
		ss.failing[user] = now.Add(probeEvery) // this request probes; the others wait for it
	}
	ss.mu.Unlock()
	stamp, err := ss.creds.Stamp(ctx, user)
	if ctx.Err() != nil {
		return "", ctx.Err() // the request ended (client gone): says nothing of the directory
	}
	down := err != nil && isOutage(err)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	_, wasFailing := ss.failing[user]
	switch {
	case down:
		if !wasFailing {
			ss.pruneFailing(now)
			if len(ss.failing) == 0 {
				ss.log.Warn("web: the user directory is unavailable: sessions checked in the last directory_grace keep working, other pages and logins answer 503 until it is back",
					"grace", ss.grace.String(), "user", user, "err", err.Error())
			}
		}
		if ss.failing == nil {
			ss.failing = map[string]time.Time{}
		}
		if wasFailing || len(ss.failing) < maxFailing {
			ss.failing[user] = now.Add(probeEvery)
		}
	case err != nil && !errors.Is(err, ErrNoUser):
		ss.log.Warn("web: reading the user's credential stamp failed", "user", user, "err", err.Error())
	case wasFailing:
		delete(ss.failing, user)
		if len(ss.failing) == 0 {
			ss.log.Info("web: the user directory answers again: sessions are checked against it again", "user", user)
		}
	}
	return stamp, err
}

// isOutage says whether err, from readStamp, means the directory could not be
// asked (a temporary failure, or a user waiting for another request's probe): only then
// does a session ride its grace.
func isOutage(err error) bool {
	var temp interface{ Temporary() bool }
	return errors.Is(err, errDirectory) || errors.As(err, &temp) && temp.Temporary()
}

// maxFailing bounds failing; a user beyond it is asked at each request.
const maxFailing = 1000

// failingStale is how long a user stays in failing without a request: one who left
// during an outage does not keep the next outage from being logged.
const failingStale = 10 * time.Minute

// pruneFailing drops the users of failing not seen for failingStale (ss.mu held).
func (ss *sessions) pruneFailing(now time.Time) {
	for u, next := range ss.failing {
		if now.Sub(next) > failingStale {
			delete(ss.failing, u)
		}
	}
}

// endUser ends user's sessions whose stamp is not keep (all of them when keep is "").
func (ss *sessions) endUser(ctx context.Context, user, keep string) {
	if _, err := ss.st.db.Exec(ctx, `DELETE FROM web_sessions WHERE "user" = ? AND stamp <> ?`, user, keep); err != nil {
		ss.log.Warn("web: ending a user's sessions failed", "user", user, "err", err.Error())
	}
}

// cachedAddrs returns user's remembered addresses, or nil.
func (ss *sessions) cachedAddrs(user string) []string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if e, ok := ss.addrs[user]; ok && ss.now().Before(e.exp) {
		return e.addrs
	}
	return nil
}

func (ss *sessions) setAddrs(user string, addrs []string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.addrs == nil || len(ss.addrs) >= 10000 {
		ss.addrs = map[string]addrEntry{} // bounded; refilled by the next pages
	}
	ss.addrs[user] = addrEntry{addrs, ss.now().Add(addrTTL)}
}

// setFlash keeps msg for the next page the session shows.
func (ss *sessions) setFlash(ctx context.Context, id, msg string) {
	if _, err := ss.st.db.Exec(ctx, `UPDATE web_sessions SET flash = ? WHERE id = ?`, msg, id); err != nil {
		ss.log.Warn("web: keeping a page's message failed", "err", err.Error())
	}
}

// takeFlash returns the session's message and forgets it.
func (ss *sessions) takeFlash(ctx context.Context, sess *session) string {
	if sess.flash == "" {
		return ""
	}
	if _, err := ss.st.db.Exec(ctx, `UPDATE web_sessions SET flash = '' WHERE id = ? AND flash = ?`, sess.id, sess.flash); err != nil {
		ss.log.Warn("web: forgetting a page's message failed", "err", err.Error())
	}
	return sess.flash
}

func (ss *sessions) delete(ctx context.Context, id string) {
	if _, err := ss.st.db.Exec(ctx, `DELETE FROM web_sessions WHERE id = ?`, id); err != nil {
		ss.log.Warn("web: deleting a session failed", "err", err.Error())
	}
}

// count returns the sessions in the database (for tests).
func (ss *sessions) count(ctx context.Context) int {
	var n int
	_ = ss.st.db.QueryRow(ctx, `SELECT count(*) FROM web_sessions`).Scan(&n)
	return n
}

// cookieName is __Host-prefixed under TLS, so the browser accepts it only Secure, for
// this host and path / (RFC 6265bis §4.1.3.2).
func cookieName(r *http.Request) string {
	if r.TLS != nil {
		return "__Host-portcullis"
	}
	return "portcullis"
}

func loginCookieName(r *http.Request) string { return cookieName(r) + "-login" }

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// user wraps a handler that needs a session; a POST must also carry the session's CSRF
// token.
func (s *Server) user(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.sessions.get(r)
		if err != nil {
			s.directoryDown(w, r)
			return
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended; log in again.")
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				s.fail(w, r, sess, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if !tokenEqual(r.PostForm.Get("csrf"), sess.csrf) {
				s.log.Warn("web: form without a valid CSRF token refused", "user", sess.user, "path", r.URL.Path, "remote", r.RemoteAddr)
				s.fail(w, r, sess, http.StatusForbidden, "The form has expired; reload the page and try again.")
				return
			}
		}
		h(w, r, sess)
	}
}

// admin wraps a handler only admins reach; others get 403.
func (s *Server) admin(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return s.user(func(w http.ResponseWriter, r *http.Request, sess *session) {
		if !sess.admin {
			s.fail(w, r, sess, http.StatusForbidden, "This page is for administrators.")
			return
		}
		h(w, r, sess)
	})
}

func tokenEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// safeNext keeps a post-login redirect on this site: a path, never "//host" or a URL.
// Browsers drop tabs and line breaks from a Location and read "\\" as "/" (WHATWG URL
// §4.4), so "/\t/evil.example" and "/\\evil.example" are "//evil.example" to them: a
// next with a control character or a backslash is refused.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsFunc(next, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == '\\'
	}) {
		return "/quarantine"
	}
	return next
}

// directoryDown answers a request whose login cannot be checked because the user
// directory is unavailable: 503 with Retry-After (RFC 9110 §15.6.4, §10.2.3), a page that
// says so; not the login form, on which no password would work then.
func (s *Server) directoryDown(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "60")
	s.fail(w, r, nil, http.StatusServiceUnavailable, directoryDownMsg)
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessions.get(r)
	if err != nil {
		s.directoryDown(w, r)
		return
	}
	if sess != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, "", r.URL.Query().Get("next"))
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg, next string) {
	// The login form's CSRF defence is a double-submit token: a random value in a
	// SameSite=Strict cookie and in the form, which another site can neither read nor set.
	tok := randomToken()
	setCookie(w, r, loginCookieName(r), tok, 600)
	s.render(w, status, "login", page{Title: "Log in", CSRF: tok, Error: msg, Data: struct{ Next string }{safeNext(next)}})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	next := r.PostForm.Get("next")
	c, err := r.Cookie(loginCookieName(r))
	if err != nil || !tokenEqual(r.PostForm.Get("csrf"), c.Value) {
		s.renderLogin(w, r, http.StatusForbidden, "The form has expired; try again.", next)
		return
	}
	username, password := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	if username == "" || password == "" || len(username) > 320 {
		s.renderLogin(w, r, http.StatusUnauthorized, "Enter your address and password.", next)
		return
	}
	user, err := s.deps.Auth.Authenticate(r.Context(), username, password, remoteAddr(r))
	if err != nil {
		var temp interface{ Temporary() bool }
		var unav interface{ Unavailable() bool }
		if errors.As(err, &unav) && unav.Unavailable() {
			s.log.Warn("web: login refused: the user directory is unavailable", "user", username, "remote", r.RemoteAddr, "err", err.Error())
			s.directoryDown(w, r)
			return
		}
		if errors.As(err, &temp) && temp.Temporary() {
			s.log.Warn("web: login refused for now", "user", username, "remote", r.RemoteAddr, "err", err.Error())
			s.renderLogin(w, r, http.StatusTooManyRequests, "Too many failed logins, or the user database is unavailable; try again later.", next)
			return
		}
		s.log.Info("web: login failed", "user", username, "remote", r.RemoteAddr)
		s.renderLogin(w, r, http.StatusUnauthorized, "Wrong address or password.", next)
		return
	}
	if _, err := s.startSession(w, r, user, s.isAdmin(user)); err != nil {
		if errors.Is(err, errDirectory) {
			s.directoryDown(w, r)
			return
		}
		if errors.Is(err, errAccountInDoubt) {
			s.renderLogin(w, r, http.StatusServiceUnavailable, "Your account cannot be checked right now; ask the postmaster.", next)
			return
		}
		s.renderLogin(w, r, http.StatusServiceUnavailable, err.Error(), next)
		return
	}
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// startSession opens a session for user, with the admin role when admin is set.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, user string, admin bool) (*session, error) {
	sess, tok, err := s.sessions.create(r.Context(), user, admin)
	if err != nil {
		return nil, err
	}
	setCookie(w, r, cookieName(r), tok, 0) // a browser-session cookie; the server ends it
	setCookie(w, r, loginCookieName(r), "", -1)
	s.log.Info("web: login", "user", user, "admin", sess.admin, "remote", r.RemoteAddr)
	return sess, nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	s.sessions.delete(r.Context(), sess.id)
	setCookie(w, r, cookieName(r), "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// Tickets log a user in from a digest email to one item: user, item, expiry, a random
// id and the user's credential stamp, signed with HMAC-SHA256. A ticket is a bearer
// credential lying in a mailbox (it may be forwarded, or read by whoever reads the
// mailbox), so it is bounded every way a password-reset link is: it works once (its id
// is recorded as used until it expires, on every node sharing the state database), for
// Config.TicketLifetime, only while the account exists with the password it had when
// the digest was made, and it opens a user's session, never an admin's (the admin role
// wants the password).

// DefaultTicketLifetime is how long a digest's links work when Config.TicketLifetime is
// zero: three days, time to read a daily digest after a weekend.
const DefaultTicketLifetime = 72 * time.Hour

// ticket is a ticket's content.
type ticket struct {
	user, id, rcpt string
	exp            int64  // Unix seconds
	nonce          string // the ticket's own id, recorded once used
	stamp          string // a digest of the user's credential stamp when it was made
}

// Ticket returns a signed login ticket for user to the quarantine item (id, rcpt),
// valid until exp.
func (s *Server) Ticket(ctx context.Context, user, id, rcpt string, exp time.Time) (string, error) {
	stamp, err := s.ticketStamp(ctx, user)
	if err != nil {
		return "", err
	}
	return s.sign(ticket{user: user, id: id, rcpt: rcpt, exp: exp.Unix(), nonce: randomToken()[:22], stamp: stamp}), nil
}

// ticketStamp is what a ticket carries of the user's credential stamp: a digest, so the
// link shows nothing of the stored hash.
func (s *Server) ticketStamp(ctx context.Context, user string) (string, error) {
	if s.deps.Credentials == nil {
		return "", nil
	}
	st, err := s.deps.Credentials.Stamp(ctx, user)
	if err != nil {
		return "", err
	}
	return hashToken("ticket\x00" + st)[:16], nil
}

func (s *Server) sign(t ticket) string {
	payload := strings.Join([]string{t.user, t.id, t.rcpt, strconv.FormatInt(t.exp, 10), t.nonce, t.stamp}, "\x00")
	mac := hmac.New(sha256.New, s.keys.sign())
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkTicket returns the content of a ticket the server signed that has not expired.
func (s *Server) checkTicket(t string) (ticket, bool) {
	p64, m64, found := strings.Cut(t, ".")
	if !found || len(t) > 2048 {
		return ticket{}, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sum, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil {
		return ticket{}, false
	}
	// Every key of the file is tried (a rotation keeps the old one for the links it
	// signed); one with until= checks only links that expire by then.
	var by *ticketKey
	for i, k := range s.keys.check {
		mac := hmac.New(sha256.New, k.key)
		mac.Write(payload)
		if hmac.Equal(sum, mac.Sum(nil)) {
			by = &s.keys.check[i]
			break
		}
	}
	if by == nil {
		return ticket{}, false
	}
	f := strings.Split(string(payload), "\x00")
	if len(f) != 6 || f[4] == "" {
		return ticket{}, false
	}
	exp, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || s.now().Unix() > exp || by.until != 0 && exp > by.until {
		return ticket{}, false
	}
	return ticket{user: f[0], id: f[1], rcpt: f[2], exp: exp, nonce: f[4], stamp: f[5]}, true
}

// ItemURL is the page's address of the quarantine item (id, rcpt), relative.
func ItemURL(id, rcpt string) string {
	return "/quarantine/item?" + url.Values{"id": {id}, "rcpt": {rcpt}}.Encode()
}

// ticketConfirm answers a digest link with a page that names the account and has one
// button; the button's POST (ticketLogin) logs in. The link is opened from a mail client
// or a webmail — a cross-site navigation, which carries no SameSite=Strict cookie — so at
// the GET the server cannot see whether the browser already holds a session of another
// account: logging in there let anyone send a victim their own ticket and have the
// victim act in the sender's account unawares (login CSRF). The POST comes from this
// page, same-site, with the browser's session cookie. A GET also spends nothing, so a
// mail scanner that fetches every link no longer uses up the single use.
func (s *Server) ticketConfirm(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("t")
	tk, ok := s.validTicket(w, r, raw)
	if !ok {
		return
	}
	tok := randomToken() // the double-submit token, as on the login form
	setCookie(w, r, loginCookieName(r), tok, 600)
	s.render(w, http.StatusOK, "ticket", page{Title: "Open quarantined message", CSRF: tok,
		Data: struct{ For, Ticket string }{tk.user, raw}})
}

// validTicket checks a ticket's signature, expiry and account (which must still exist
// with the password it had: a user deleted, or whose password was changed because the
// mailbox was thought compromised, loses the links); it answers the refusal itself.
func (s *Server) validTicket(w http.ResponseWriter, r *http.Request, raw string) (ticket, bool) {
	tk, ok := s.checkTicket(raw)
	if ok {
		stamp, err := s.ticketStamp(r.Context(), tk.user)
		if err != nil && !errors.Is(err, ErrNoUser) {
			s.log.Warn("web: reading the user's credential stamp failed", "user", tk.user, "err", err.Error())
			s.directoryDown(w, r)
			return ticket{}, false
		}
		ok = err == nil && stamp == tk.stamp
	}
	if !ok {
		s.fail(w, r, nil, http.StatusForbidden, "This link has expired or is not valid; log in instead.")
	}
	return tk, ok
}

// ticketLogin is the confirmation page's POST: it spends the ticket and opens the item.
func (s *Server) ticketLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if c, err := r.Cookie(loginCookieName(r)); err != nil || !tokenEqual(r.PostForm.Get("csrf"), c.Value) {
		s.fail(w, r, nil, http.StatusForbidden, "The form has expired; open the link again.")
		return
	}
	tk, ok := s.validTicket(w, r, r.PostForm.Get("t"))
	if !ok {
		return
	}
	sess, err := s.sessions.get(r)
	if err != nil {
		s.directoryDown(w, r)
		return
	}
	if sess != nil && sess.user != tk.user {
		// Switching would let anyone log a victim in to the sender's account with the
		// sender's own ticket (login CSRF): the victim would then act there unawares.
		s.fail(w, r, sess, http.StatusForbidden, "This link is for another account; log out first to use it.")
		return
	}
	fresh, err := s.deps.State.useTicket(ctx, tk.nonce, tk.exp)
	if err != nil {
		s.log.Warn("web: recording a used ticket failed", "err", err.Error())
		s.fail(w, r, sess, http.StatusServiceUnavailable, errUnavailable.Error())
		return
	}
	if !fresh && sess == nil {
		// Used already (in another browser, or by whoever the digest was forwarded to):
		// the password leads to the same item.
		s.renderLogin(w, r, http.StatusForbidden, "This link was used already; log in to see the message.", ItemURL(tk.id, tk.rcpt))
		return
	}
	if sess == nil {
		if sess, err = s.startSession(w, r, tk.user, false); err != nil {
			if errors.Is(err, errDirectory) {
				s.directoryDown(w, r)
				return
			}
			s.fail(w, r, nil, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	s.showItem(w, r, sess, tk.id, tk.rcpt, "")
}
