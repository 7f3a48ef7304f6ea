package managesieve

import (
	"github.com/portcullis-mail/portcullis/internal/loggedin"

	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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
	// Implementation is the IMPLEMENTATION capability; default "portcullis".
	Implementation string `yaml:"-"`
	// TLSConfig enables STARTTLS. Not read from YAML.
	TLSConfig *tls.Config `yaml:"-"`
	// Trusted allows AUTHENTICATE without TLS (a loopback or internal listener).
	Trusted bool `yaml:"trusted"`
	// MaxScripts bounds a user's scripts (QUOTA/MAXSCRIPTS); 0: no limit. portcullis
	// serve passes sieve.max_scripts.
	MaxScripts int `yaml:"-"`
	// MaxScriptSize bounds one script (QUOTA/MAXSIZE); default 1MiB, Pigeonhole's.
	// portcullis serve passes sieve.max_script_size.
	MaxScriptSize bytesize.Size `yaml:"-"`
	// MaxRedirects is the MAXREDIRECTS capability (RFC 5804 §1.7); 0 leaves it out.
	// portcullis serve passes sieve.max_redirects.
	MaxRedirects int `yaml:"-"`
	// IdleTimeout closes a session that sends nothing for this long; default 30 minutes.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxLineSize bounds a command outside its literals; default 8KiB.
	MaxLineSize bytesize.Size `yaml:"max_line_size"`
	// MaxCommands bounds the commands of one session; default 10000.
	MaxCommands int `yaml:"max_commands"`
	// MaxErrors closes a session after this many failed commands; default 20.
	MaxErrors int `yaml:"max_errors"`
	// MaxConnections bounds the listener's connections; default 200. -1: no limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds one client address's connections; default 10. -1: no
	// limit.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxLoginConnections bounds the connections that have not logged in yet; when it
	// is full the one that waited longest is closed to make room. Default 50; -1: no
	// limit.
	MaxLoginConnections int `yaml:"max_login_connections"`
	// LoginTimeout closes a connection that has not logged in this long after
	// connecting; default 1 minute. -1: none.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// MaxLoginCommands closes a connection that sends more commands than this before it
	// logs in; default 20. -1: no limit.
	MaxLoginCommands int `yaml:"max_login_commands"`
	// IPv6Prefix groups IPv6 clients by network for max_connections_per_ip (default
	// 64).
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// Authenticator checks a user name and password and returns the canonical user name; the
// auth package's Service.Auth implements it (throttling and its verified-credential cache
// included). An error with a method Temporary() bool that returns true is answered NO
// (TRYLATER); any other error as bad credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// Checker validates a script with the compiler delivery uses, so that PUTSCRIPT stores
// only scripts that will run (RFC 5804 §2.6). Check returns the compiler's warnings (""
// for none) or an error whose text, with line and column, goes to the client.
type Checker interface {
	Check(script []byte) (warnings string, err error)
	// Extensions lists the Sieve extensions the compiler supports (the SIEVE
	// capability, RFC 5804 §1.7).
	Extensions() []string
}

// Deps are what a Server works with.
type Deps struct {
	// Store holds the scripts (store.User.Scripts). Required.
	Store *store.Store
	// Auth checks passwords. Required.
	Auth Authenticator
	// Checker validates scripts. Required.
	Checker Checker
	// Logger receives the server's records; default slog.Default().
	Logger *slog.Logger
}

// Server is a ManageSieve server.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	rlog *ratelog.Logger

	group connlimit.Group // listeners and sessions, for Close
	// sessions are the logged-in sessions by user, for Evict (evict.go).
	sessions loggedin.Registry[*session] // evict.go
}

// New returns a server. It does no I/O.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Store == nil || deps.Auth == nil || deps.Checker == nil {
		return nil, errors.New("managesieve: store, authenticator and checker are required")
	}
	if err := connlimit.CheckIPv6Prefix(cfg.IPv6Prefix); err != nil {
		return nil, fmt.Errorf("managesieve: %w", err)
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = connlimit.DefaultIPv6Prefix
	}
	if cfg.Implementation == "" {
		cfg.Implementation = "portcullis"
	}
	if cfg.MaxScriptSize <= 0 {
		cfg.MaxScriptSize = 1 << 20
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxLineSize <= 0 {
		cfg.MaxLineSize = 8 << 10
	}
	if cfg.MaxCommands <= 0 {
		cfg.MaxCommands = 10000
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 20
	}
	defaultInt(&cfg.MaxConnections, 200)
	defaultInt(&cfg.MaxConnectionsPerIP, 10)
	defaultInt(&cfg.MaxLoginConnections, 50)
	defaultInt(&cfg.MaxLoginCommands, 20)
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = time.Minute
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("server", "managesieve")
	return &Server{cfg: cfg, deps: deps, log: log, rlog: ratelog.New(log)}, nil
}

func defaultInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

// Serve accepts connections on ln until Close, with its own pool of connections.
func (s *Server) Serve(ln net.Listener) error {
	if !s.group.Listen(ln) {
		return net.ErrClosed
	}
	defer s.group.Unlisten(ln)
	p := connlimit.NewPool(connlimit.Limits{MaxConnections: s.cfg.MaxConnections,
		MaxConnectionsPerIP: s.cfg.MaxConnectionsPerIP, MaxLoginConnections: s.cfg.MaxLoginConnections,
		IPv6Prefix: s.cfg.IPv6Prefix})
	for {
		c, err := connlimit.Accept(ln, func(err error, wait time.Duration) {
			s.rlog.Warn("managesieve accept", "err", err, "retry_in", wait)
		})
		if err != nil {
			if s.group.Closed() {
				return net.ErrClosed
			}
			return fmt.Errorf("managesieve: accept: %w", err)
		}
		ip := connlimit.RemoteIP(c)
		st := &connState{srv: s, ip: ip, conn: c}
		if st.slot, err = p.Admit(ip, st.kick); err != nil {
			s.rlog.Info("managesieve connection refused", "remote", ip, "reason", err.Error())
			connlimit.Refuse(c, `BYE (TRYLATER) `+quote(err.Error()))
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

// Close stops the listeners and ends open sessions.
func (s *Server) Close() error {
	s.group.Close()
	return nil
}

// ServeConn runs one session on c and closes it; the connection limits of Serve do not
// apply, the timeouts and command limits do.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) { s.serveConn(ctx, c, nil) }

// connState is one accepted connection in its listener's pool.
type connState struct {
	srv  *Server
	ip   netip.Addr
	conn net.Conn
	slot *connlimit.Conn

	mu  sync.Mutex
	tls bool
}

func (st *connState) startedTLS() {
	st.mu.Lock()
	st.tls = true
	st.mu.Unlock()
}

// kick closes a connection the pool evicts, with BYE when it is not TLS (a line written
// from outside the session would break the TLS stream).
func (st *connState) kick(why error) {
	st.mu.Lock()
	isTLS := st.tls
	st.mu.Unlock()
	st.srv.rlog.Info("managesieve connection closed", "remote", st.ip, "reason", why.Error())
	if !isTLS {
		st.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(st.conn, "BYE "+quote(why.Error())+"\r\n")
	}
	st.conn.Close()
}
