package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/quarantine"
	"github.com/portcullis-mail/portcullis/spool"
)

// Authenticator checks a user's password; auth.Service.Auth implements it (throttling
// included). It returns the canonical user name.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// Owner says whether user owns address (theirs, or an alias delivering to them);
// *route.Router implements it.
type Owner interface {
	Owns(ctx context.Context, user, address string) (bool, error)
}

// Credentials tells the page when a user's credentials change, so that the sessions
// opened before end: a password changed or a user deleted, by this process, by
// `portcullis user` or on another node, ends that user's sessions at their next request.
type Credentials interface {
	// Stamp returns a value that changes whenever user's password does (a digest of the
	// stored hash), or an error wrapping ErrNoUser when the user no longer exists.
	Stamp(ctx context.Context, user string) (string, error)
}

// ErrNoUser is what Credentials.Stamp returns for a user that does not exist.
var ErrNoUser = errors.New("web: no such user")

// ListOwners names the users whose sender lists the rules read for a recipient: the
// canonical users it delivers to through aliases, without extensions.
type ListOwners interface {
	ListOwners(ctx context.Context, rcpt string) ([]string, error)
}

// Quarantine is what the page needs of the quarantine; *quarantine.Area implements it.
type Quarantine interface {
	List(ctx context.Context, visible func(rcpt string) bool) ([]quarantine.Item, error)
	Get(id, rcpt string) (quarantine.Item, error)
	Message(id string) (*spool.Message, error)
	Release(ctx context.Context, id, rcpt, by string) (string, error)
	Delete(id, rcpt, by string) error
	Lifetime() time.Duration
}

// SenderLists are the per-user sender lists and digest preferences; *quarantine.Lists
// implements it.
type SenderLists interface {
	Set(ctx context.Context, user, sender, kind string) error
	Remove(ctx context.Context, user, sender string) error
	Entries(ctx context.Context, user string) ([]quarantine.Entry, error)
	Digest(ctx context.Context, user string) (string, error)
	SetDigest(ctx context.Context, user, freq string) error
}

// Config configures the page.
type Config struct {
	// Admins are the accounts with the admin role (set from the top-level admins).
	Admins []string `yaml:"-"`
	// SessionLifetime ends a session this long after login, whatever its use.
	SessionLifetime time.Duration `yaml:"session_lifetime"`
	// IdleTimeout ends a session unused this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// URL is the page's address as users reach it, for the links in digest emails
	// (e.g. https://mail.example.org:8025); empty: http:// or https:// and the listening
	// address.
	URL string `yaml:"url"`
	// MaxSessions bounds the sessions kept at once; a login beyond it is refused.
	MaxSessions int `yaml:"max_sessions"`
	// TicketLifetime is how long the links of a digest email work (default 72h). Each
	// link logs its user in once, to one message, and stops working when the user's
	// password changes or the account is deleted; after that the password is needed.
	TicketLifetime time.Duration `yaml:"ticket_lifetime"`
	// SecretFile holds the keys that sign the digest's links and derive the forms'
	// CSRF tokens (default DATA/web.secret, which the server sets). They are kept out
	// of the State database, so that a copy of it signs nothing. With a SQLite State a
	// missing file is created (mode 0600, one random key); with the PostgreSQL State
	// that several nodes share, every node needs the same file (umask 077; openssl rand
	// -hex 32 > FILE) and a missing one is an error. One key a line: the first signs,
	// the others (an old key kept during a rotation until its links expire) only check
	// links. Read at start.
	SecretFile string `yaml:"secret_file"`
	// DirectoryGrace is how long a session whose user's credential stamp (Credentials)
	// was last verified keeps working while the stamp cannot be read because the user
	// directory (LDAP, the user database) is unavailable (default 5m). After it, and for
	// a new login, the page answers 503 until the directory is back; a password changed
	// meanwhile ends the session at the first check that succeeds. A negative value
	// (e.g. -1s) turns the grace off: every page answers 503 while the stamp cannot be
	// read.
	DirectoryGrace time.Duration `yaml:"directory_grace"`

	Logger *slog.Logger `yaml:"-"`
}

// Deps are the page's collaborators. Quarantine and Lists may be nil (no quarantine
// pages).
type Deps struct {
	Auth Authenticator
	// State keeps the sessions and the used tickets (required).
	State *State
	// Credentials ends the sessions of a user whose password changed or who was
	// deleted; nil: a session lives its lifetime whatever becomes of its user.
	Credentials Credentials
	Owner       Owner
	Quarantine  Quarantine
	Lists       SenderLists
	// ListOwners gives the lists an admin's allow or block on another user's message
	// goes to (nil: the recipient's own, lower-cased).
	ListOwners ListOwners
	// Log is the decision log (nil: no decision pages); Addresses gives each user's
	// addresses and aliases for its scope (nil: their login address alone).
	Log       DecisionLog
	Addresses Addresses
	// LegacyKey is the ticket key an older version kept in DATA/web.key (nil: none):
	// when Config.SecretFile is created, it goes there as an old key (see loadKeys), so
	// the links it signed work until they expire.
	LegacyKey []byte
	// Now replaces the clock in tests.
	Now func() time.Time
}

// Server is the page.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	sessions *sessions
	keys     *keys
	pages    map[string]*template.Template
	mux      *http.ServeMux
	now      func() time.Time

	chartMu    sync.Mutex
	chartCache map[string]chartEntry // by scope
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Limits of a request.
const (
	maxBody        = 64 << 10         // a form is a few fields
	requestTimeout = 30 * time.Second // a page that takes longer is an error, not a wait
	maxSource      = 256 << 10        // the message source shown on the detail page
)

// New returns the page.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Auth == nil || deps.Owner == nil || deps.State == nil {
		return nil, errors.New("web: Auth, Owner and State are required")
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = 12 * time.Hour
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 10000
	}
	if cfg.TicketLifetime == 0 {
		cfg.TicketLifetime = DefaultTicketLifetime
	}
	switch {
	case cfg.DirectoryGrace == 0:
		cfg.DirectoryGrace = DefaultDirectoryGrace
	case cfg.DirectoryGrace < 0:
		cfg.DirectoryGrace = 0 // off: a session whose stamp cannot be read is not served
	}
	if cfg.SessionLifetime < 0 || cfg.IdleTimeout < 0 || cfg.MaxSessions < 0 || cfg.TicketLifetime < 0 {
		return nil, errors.New("web: session_lifetime, idle_timeout, max_sessions and ticket_lifetime must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.SecretFile == "" {
		return nil, errors.New("web: secret_file is required")
	}
	k, err := loadKeys(context.Background(), deps.State, cfg.SecretFile, deps.LegacyKey, cfg.TicketLifetime, cfg.Logger.Warn)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: cfg.Logger, now: deps.Now, keys: k}
	s.sessions = &sessions{st: deps.State, creds: deps.Credentials, lifetime: cfg.SessionLifetime, idle: cfg.IdleTimeout,
		max: cfg.MaxSessions, now: deps.Now, log: cfg.Logger, isAdmin: s.isAdmin, keys: k, grace: cfg.DirectoryGrace}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) parseTemplates() error {
	funcs := template.FuncMap{
		"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
		"size": func(n int64) string {
			switch {
			case n >= 1<<20:
				return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
			case n >= 1<<10:
				return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
			}
			return fmt.Sprintf("%d B", n)
		},
		"join": strings.Join,
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	s.pages = map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("web: template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	return nil
}

// ServeHTTP serves the page with its security headers and limits.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer") // the digest's ticket links must not leak
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		// A cross-site POST is refused whatever its token (SameSite cookies already keep
		// the session out of it): the browser names its origin (Fetch, "Origin" header).
		if o := r.Header.Get("Origin"); o != "" && o != "null" && !sameOrigin(o, r) {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		if sf := r.Header.Get("Sec-Fetch-Site"); sf == "cross-site" {
			http.Error(w, "cross-site request refused", http.StatusForbidden)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func sameOrigin(origin string, r *http.Request) bool {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return origin == scheme+r.Host
}

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(http.FileServerFS(static))))
	m.HandleFunc("GET /{$}", s.home)
	m.HandleFunc("GET /login", s.loginForm)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.user(s.logout))
	m.HandleFunc("GET /ticket", s.ticketConfirm)
	m.HandleFunc("POST /ticket", s.ticketLogin)
	m.HandleFunc("GET /quarantine", s.user(s.quarantineList(false)))
	m.HandleFunc("GET /quarantine/item", s.user(s.quarantineItem))
	m.HandleFunc("POST /quarantine/item", s.user(s.quarantineAction))
	m.HandleFunc("GET /quarantine/charts", s.user(s.quarantineCharts(false)))
	m.HandleFunc("GET /senders", s.user(s.senders))
	m.HandleFunc("POST /senders", s.user(s.sendersUpdate))
	m.HandleFunc("GET /log", s.user(s.logList))
	m.HandleFunc("GET /log/{id}", s.user(s.logRecord))
	m.HandleFunc("GET /charts", s.user(s.logCharts))
	m.HandleFunc("GET /admin/quarantine", s.admin(s.quarantineList(true)))
	m.HandleFunc("GET /admin/charts", s.admin(s.quarantineCharts(true)))
	s.mux = m
}

func staticFiles(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	HasLog bool // the decision log's pages exist
	Title  string
	User   string
	Admin  bool
	CSRF   string
	Flash  string
	Error  string
	Data   any
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	t, ok := s.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	p.HasLog = s.deps.Log != nil
	var b strings.Builder
	if err := t.Execute(&b, p); err != nil {
		s.log.Error("web: rendering failed", "page", name, "err", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b.String())
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string) {
	p := page{Title: http.StatusText(status), Error: msg}
	if sess != nil {
		p.User, p.Admin, p.CSRF = sess.user, sess.admin, sess.csrf
	}
	s.render(w, status, "error", p)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessions.get(r)
	if err != nil {
		s.directoryDown(w, r)
		return
	}
	if sess == nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	if s.deps.Log != nil {
		http.Redirect(w, r, "/log", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/quarantine", http.StatusSeeOther)
}

// isAdmin says whether user has the admin role.
func (s *Server) isAdmin(user string) bool {
	return slices.ContainsFunc(s.cfg.Admins, func(a string) bool { return strings.EqualFold(a, user) })
}

// visible returns the test of a recipient's visibility to sess: every recipient for an
// admin in the admin view, the recipients the user owns otherwise. Answers are cached for
// the request (a list asks for the same recipients over and over).
func (s *Server) visible(ctx context.Context, sess *session, all bool) func(string) bool {
	if all && sess.admin {
		return nil
	}
	cache := map[string]bool{}
	return func(rcpt string) bool {
		if v, ok := cache[rcpt]; ok {
			return v
		}
		ok, err := s.deps.Owner.Owns(ctx, sess.user, rcpt)
		if err != nil {
			s.log.Warn("web: ownership lookup failed", "user", sess.user, "rcpt", rcpt, "err", err.Error())
		}
		cache[rcpt] = ok && err == nil
		return cache[rcpt]
	}
}

// mayAct says whether sess may see and act on rcpt's item: its owner, or an admin.
func (s *Server) mayAct(ctx context.Context, sess *session, rcpt string) bool {
	if sess.admin {
		return true
	}
	ok, err := s.deps.Owner.Owns(ctx, sess.user, rcpt)
	return ok && err == nil
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
