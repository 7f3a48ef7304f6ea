// Package pop3d is a POP3 server over the mail store, written here (no Go POP3 server
// library is reachable): RFC 1939 (USER/PASS, STAT, LIST, UIDL, RETR, TOP, DELE, RSET,
// NOOP, QUIT with deletions committed in the UPDATE state), CAPA and response codes
// (RFC 2449), STLS (RFC 2595) and AUTH with SASL PLAIN (RFC 5034). Passwords are accepted
// only over TLS unless the listener is configured as trusted.
//
// A session locks the user's maildrop against other POP3 sessions (RFC 1939 §8: exclusive
// access) but not against IMAP: IMAP sessions and delivery keep working on the same INBOX.
// Messages expunged by IMAP during a POP3 session answer "-ERR" when retrieved, and the
// deletions committed at QUIT reach IMAP sessions as EXPUNGE updates through the store.
package pop3d

import (
	"github.com/portcullis-mail/portcullis/internal/loggedin"

	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/internal/ratelog"
	"github.com/portcullis-mail/portcullis/store"
)

// Config configures a Server.
type Config struct {
	// Hostname is named in the greeting; default "localhost".
	Hostname string `yaml:"hostname"`
	// TLSConfig enables STLS (and is used by ServeTLS). Not read from YAML.
	TLSConfig *tls.Config `yaml:"-"`
	// Trusted allows USER/PASS and AUTH without TLS (a loopback or internal listener).
	Trusted bool `yaml:"trusted"`
	// IdleTimeout closes a session that sends nothing for this long; default 10 minutes,
	// the minimum RFC 1939 §3 allows.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxLineSize bounds a command line; default 1024 (RFC 2449 §4 allows 255 for
	// commands, SASL responses need more).
	MaxLineSize bytesize.Size `yaml:"max_line_size"`
	// MaxCommands bounds the commands in one session; default 100000.
	MaxCommands int `yaml:"max_commands"`
	// MaxErrors closes a session after this many failed commands; default 20.
	MaxErrors int `yaml:"max_errors"`
	// MaxMessages bounds the maildrop listed to one session (the oldest first); default
	// 100000.
	MaxMessages int `yaml:"max_messages"`
	// MarkSeen sets \Seen on retrieved messages at QUIT, as Dovecot does; default true.
	MarkSeen *bool `yaml:"mark_seen"`
	// MaxConnections bounds the connections of each listener; default 500 (POP3 sessions
	// are short: download and quit). -1: no limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds one client address's connections to a listener; default
	// 20 (a client polls one maildrop at a time, which one session holds). -1: no limit.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxLoginConnections bounds a listener's connections that have not logged in yet;
	// when it is full the one that waited longest is closed to make room, as Dovecot's
	// pop3-login does. Default 100; -1: no limit.
	MaxLoginConnections int `yaml:"max_login_connections"`
	// LoginTimeout closes a connection that has not logged in this long after connecting,
	// however busy; default 1 minute (Dovecot: 3 minutes). -1: none.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// IPv6Prefix groups IPv6 clients by network for max_connections_per_ip and for the
	// choice of the connection closed to make room for a login (default 64: one host
	// usually owns a whole /64, as SMTP and the auth throttle count it); IPv4 clients
	// count by their address.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// MaxLoginCommands closes a connection that sends more commands than this before it
	// logs in (CAPA, NOOP, failed logins, errors); default 20. -1: no limit.
	MaxLoginCommands int `yaml:"max_login_commands"`
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

// Server is a POP3 server.
type Server struct {
	cfg   Config
	store *store.Store
	auth  Authenticator
	log   *slog.Logger
	rlog  *ratelog.Logger // what clients can cause, rate-limited

	failDelay time.Duration // before answering a failed login; tests lower it

	mu     sync.Mutex
	locked map[string]bool // maildrops held by a session
	// sessions are the logged-in sessions by user, for Evict (evict.go).
	sessions loggedin.Registry[*session] // evict.go
	group    connlimit.Group             // listeners and sessions, for Close
}

// New returns a server for the store; a is the shared authenticator. No I/O.
func New(cfg Config, st *store.Store, a Authenticator, log *slog.Logger) (*Server, error) {
	if st == nil || a == nil {
		return nil, errors.New("pop3d: store and authenticator are required")
	}
	if err := connlimit.CheckIPv6Prefix(cfg.IPv6Prefix); err != nil {
		return nil, fmt.Errorf("pop3d: %w", err)
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = connlimit.DefaultIPv6Prefix
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxLineSize <= 0 {
		cfg.MaxLineSize = 1024
	}
	if cfg.MaxCommands <= 0 {
		cfg.MaxCommands = 100000
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 20
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 100000
	}
	if cfg.MarkSeen == nil {
		t := true
		cfg.MarkSeen = &t
	}
	defaultInt(&cfg.MaxConnections, 500)
	defaultInt(&cfg.MaxConnectionsPerIP, 20)
	defaultInt(&cfg.MaxLoginConnections, 100)
	defaultInt(&cfg.MaxLoginCommands, 20)
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("server", "pop3")
	return &Server{cfg: cfg, store: st, auth: a, log: log, rlog: ratelog.New(log),
		failDelay: 500 * time.Millisecond, locked: map[string]bool{}}, nil
}

// defaultInt sets *n to def when it is 0; a negative value means no limit.
func defaultInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

// Serve accepts connections on ln until Close, with its own pool of connections
// (Config.MaxConnections and the other limits). Connections that are *tls.Conn (a
// listener from tls.NewListener, POP3S on port 995) count as TLS from the start.
func (s *Server) Serve(ln net.Listener) error {
	if !s.group.Listen(ln) {
		return net.ErrClosed
	}
	defer s.group.Unlisten(ln)
	p := s.newPool()
	for {
		c, err := connlimit.Accept(ln, func(err error, wait time.Duration) {
			s.rlog.Warn("pop3 accept", "err", err, "retry_in", wait)
		})
		if err != nil {
			if s.group.Closed() {
				return net.ErrClosed
			}
			return fmt.Errorf("pop3d: accept: %w", err)
		}
		ip := connlimit.RemoteIP(c)
		st := &connState{srv: s, ip: ip, conn: c}
		if st.slot, err = p.Admit(ip, st.kick); err != nil {
			s.refuse(c, ip, err)
			continue
		}
		if !s.group.Go(c, func() {
			defer st.slot.Release()
			s.serveConn(context.Background(), c, st)
		}) {
			st.slot.Release()
			c.Close()
			return net.ErrClosed
		}
	}
}

// Close stops the listeners and ends open sessions without committing their deletions.
func (s *Server) Close() error {
	s.group.Close()
	return nil
}

func (s *Server) lock(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[user] {
		return false
	}
	s.locked[user] = true
	return true
}

func (s *Server) unlock(user string) {
	s.mu.Lock()
	delete(s.locked, user)
	s.mu.Unlock()
}

// ServeConn runs one POP3 session on c and closes it. The connection limits of Serve
// do not apply; the login timeout and command limit do.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) { s.serveConn(ctx, c, nil) }

func (s *Server) serveConn(ctx context.Context, c net.Conn, st *connState) {
	sess := &session{srv: s, conn: c, ctx: ctx, cs: st, loginBy: time.Now().Add(s.cfg.LoginTimeout)}
	if s.cfg.LoginTimeout < 0 {
		sess.loginBy = time.Time{}
	}
	_, sess.tls = c.(*tls.Conn)
	sess.remote = connlimit.RemoteIP(c)
	sess.setConn(c)
	defer sess.close()
	sess.run()
}

// uidl returns the unique-id of message i: the one it had at the old server when a
// migration kept it, its own otherwise.
func (s *session) uidl(i int) string {
	if u, ok := s.uidls[s.msgs[i].UID]; ok {
		return u
	}
	return uidl(s.msgs[i])
}

// uidl returns the unique-id of a message (RFC 1939 §7: 1–70 characters 0x21–0x7E, never
// reused). The maildir key is stable even across an index rebuild, so clients that leave
// mail on the server do not download it twice; long keys are hashed.
func uidl(m store.Message) string {
	k := m.Key
	ok := len(k) <= 70
	for i := 0; ok && i < len(k); i++ {
		ok = k[i] >= 0x21 && k[i] <= 0x7e
	}
	if ok {
		return k
	}
	h := sha256.Sum256([]byte(k))
	return hex.EncodeToString(h[:20])
}

// bufferedConn is the reader and writer of a session, replaced after STLS.
type bufferedConn struct {
	r *bufio.Reader
	w *bufio.Writer
}
