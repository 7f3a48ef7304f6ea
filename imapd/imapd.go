// Package imapd is the IMAP server over the mail store, on go-imap/v2's imapserver
// (pinned at v2.0.0-beta.8). It speaks IMAP4rev1 and IMAP4rev2 with IDLE, UIDPLUS, MOVE,
// SPECIAL-USE, NAMESPACE, LITERAL+, ENABLE, UNSELECT, STATUS, ESEARCH and SEARCHRES, APPEND
// with flags and date, and SEARCH including body text.
//
// Each session keeps its own view of the selected mailbox (the UIDs the client knows, in
// order) and turns the store's change events into EXISTS, EXPUNGE and FETCH FLAGS updates,
// so IDLE sessions see deliveries, other sessions' changes and POP3 deletions. The
// library's MailboxTracker and its in-memory example are not used: EXAMINE is enforced as
// read-only here (no STORE, EXPUNGE, MOVE or implicit \Seen), and MOVE reports exactly one
// EXPUNGE per moved message, once.
//
// LOGIN and AUTHENTICATE are refused before STARTTLS unless the listener is trusted; a
// listener wrapped with tls.NewListener serves implicit TLS (port 993).
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/store"
)

// Config configures a Server.
type Config struct {
	// TLSConfig enables STARTTLS; not read from YAML.
	TLSConfig *tls.Config `yaml:"-"`
	// Trusted allows LOGIN and AUTHENTICATE without TLS (loopback or internal listeners).
	Trusted bool `yaml:"trusted"`
	// MaxFetchSize bounds how much of one message is read into memory to answer FETCH
	// and SEARCH; default the store's max_message_size (64MiB).
	MaxFetchSize bytesize.Size `yaml:"max_fetch_size"`
	// CacheSize bounds the memory holding what was decoded from messages, shared by all
	// sessions, least recently used out: the text SEARCH TEXT/BODY look at and envelopes;
	// default 32MiB, -1 turns the cache off.
	CacheSize bytesize.Size `yaml:"cache_size"`
	// Debug receives the raw protocol traffic (including passwords); nil for none.
	Debug io.Writer `yaml:"-"`
	// Train, when set, is called after a user moves or copies messages into the \Junk
	// folder (spam) or moves them out of it into any folder but \Trash (ham), so the
	// Bayesian scorer learns from users. It runs in the background, a few at a time.
	Train func(ctx context.Context, user string, msg io.Reader, spam bool) error `yaml:"-"`
}

// Authenticator checks a user name and password and returns the canonical user name; the
// auth package's Service.Auth implements it. An error with a method Temporary() bool
// that returns true (the user database is down, too many failures) is answered as a
// temporary failure; any other error as bad credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// isTemporary reports whether err (or one it wraps) says it is temporary.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Server is an IMAP server.
type Server struct {
	cfg   Config
	store *store.Store
	auth  Authenticator
	log   *slog.Logger
	srv   *imapserver.Server
	train chan struct{} // bounds concurrent Train calls
	cache *msgCache     // decoded search text and envelopes; nil when off
}

// Caps is what the server advertises (besides the always-on IDLE, ENABLE, UNSELECT,
// SASL-IR, LITERAL- and UTF8=ACCEPT that imapserver adds itself).
var Caps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
	imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapSpecialUse: {}, imap.CapNamespace: {},
	imap.CapLiteralPlus: {}, imap.CapESearch: {}, imap.CapSearchRes: {}, imap.CapChildren: {},
	imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapStatusSize: {},
	imap.CapAppendLimit: {}, imap.CapCreateSpecialUse: {},
}

// New returns a server over st that authenticates with a. No I/O.
func New(cfg Config, st *store.Store, a Authenticator, log *slog.Logger) (*Server, error) {
	if st == nil || a == nil {
		return nil, errors.New("imapd: store and authenticator are required")
	}
	if cfg.MaxFetchSize <= 0 {
		cfg.MaxFetchSize = st.Config().MaxMessageSize
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 32 << 20
	}
	s := &Server{cfg: cfg, store: st, auth: a, log: log.With("server", "imap"), train: make(chan struct{}, 4)}
	if cfg.CacheSize > 0 {
		s.cache = newMsgCache(int64(cfg.CacheSize))
	}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         Caps,
		Logger:       logAdapter{s.log},
		TLSConfig:    cfg.TLSConfig,
		InsecureAuth: cfg.Trusted,
		DebugWriter:  cfg.Debug,
	})
	return s, nil
}

// Serve accepts IMAP connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("imapd: %w", err)
	}
	return err
}

// Close stops the listeners and closes every connection.
func (s *Server) Close() error { return s.srv.Close() }

type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Printf(format string, args ...any) { a.l.Warn(fmt.Sprintf(format, args...)) }

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	return &session{srv: s, conn: c, started: time.Now()}, nil, nil
}
