package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/internal/proxylisten"
)

// Authenticator checks a user's password and returns the canonical user name; its
// errors with a method Temporary() bool that returns true are answered as temporary
// failures (auth.ErrThrottled, auth.ErrUnavailable).
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// Directory says where a user's mailbox is (directory.Directory).
type Directory interface {
	Lookup(ctx context.Context, address string) (directory.User, error)
}

// Backend is one mail store, named in the directory by its mail host.
type Backend struct {
	// IMAP and POP3 are the back-end's listening addresses (host:port) for the proxy;
	// their listeners must accept the PROXY protocol from the proxy (imap.proxy_protocol,
	// pop3.proxy_protocol).
	IMAP string `yaml:"imap"`
	POP3 string `yaml:"pop3"`
	// ManageSieve is the back-end's ManageSieve listener (plaintext: the link is on the
	// trusted network whatever TLS says, ManageSieve having no implicit TLS port).
	ManageSieve string `yaml:"managesieve"`
	// LMTP is the back-end's LMTP listener (plaintext, on the trusted network).
	LMTP string `yaml:"lmtp"`
	// TLS connects with implicit TLS (the back-end's imaps/pop3s listeners). Without it
	// the link is plaintext, for a back-end on a trusted network: the PROXY header says
	// the client came over TLS (PP2_TYPE_SSL), which is what lets the back-end take a
	// login from the proxy's address without TLS, and the link costs no second
	// encryption (the proxy's CPU per command is about halved).
	TLS bool `yaml:"tls"`
	// ServerName is the name checked in the back-end's certificate (default: the host of
	// the address).
	ServerName string `yaml:"server_name"`
	// CAFile is a PEM bundle of CAs to trust for the back-end instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify disables certificate verification (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Config is the proxy.
type Config struct {
	// Hostname names the proxy in greetings.
	Hostname string `yaml:"-"`
	// TLSConfig is the server certificate offered to clients (required).
	TLSConfig *tls.Config `yaml:"-"`
	// Backends are the mail stores by mail host name.
	Backends map[string]Backend `yaml:"backends"`
	// DefaultHost is the back-end of users whose directory entry names no mail host.
	DefaultHost string `yaml:"default_host"`
	// ConnectTimeout bounds connecting and logging in to a back-end (default 10s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// IdleTimeout closes a session in which neither side sent anything for this long
	// (default 30m, RFC 9051 §5.4's minimum for IMAP's autologout timer).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// LoginTimeout closes a connection that has not logged in after this long
	// (default 1m).
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// MaxConnections, MaxConnectionsPerIP and MaxLoginConnections bound the connections
	// of each listener (defaults 10000, 50 and 1000; negative: no limit).
	MaxConnections      int `yaml:"max_connections"`
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	MaxLoginConnections int `yaml:"max_login_connections"`
	// MaxLoginAttempts closes a connection after this many failed logins (default 3).
	MaxLoginAttempts int `yaml:"max_login_attempts"`
	// MasterUser and MasterSecretFile are the master credential the proxy logs in to
	// back-ends with, on behalf of the user it has authenticated (SASL PLAIN with the
	// user as authorization identity, RFC 4616 §2; Dovecot's master users): back-ends
	// then need no copy of users' passwords. A back-end with the same two keys accepts
	// the credential only on connections from its proxy_from addresses. The file holds
	// a random secret of at least 32 characters (e.g. openssl rand -hex 32). Empty: the
	// proxy logs in with the user's own password.
	MasterUser       string `yaml:"master_user"`
	MasterSecretFile string `yaml:"master_secret_file"`
	// HealthInterval is how often each back-end address is checked (connect, PROXY
	// header, greeting; default 5s; negative: never). A back-end found down answers its
	// users' logins with the temporary error at once, instead of after a connect
	// timeout, until a check succeeds again.
	HealthInterval time.Duration `yaml:"health_interval"`
	// ProxyMaybe serves in this process the users whose mail host is LocalHost (Dovecot's
	// proxy_maybe): a node that is both proxy and back-end proxies the others' sessions
	// and hands its own users' to its own IMAP, POP3 and ManageSieve servers in memory,
	// without a network hop or a second TLS.
	ProxyMaybe bool `yaml:"proxy_maybe"`
	// LocalHost is this node's mail host name in the directory (for ProxyMaybe).
	LocalHost string `yaml:"local_host"`
	// LMTPFrom are the clients (CIDRs or addresses) the LMTP listener serves, the
	// front-ends: LMTP has no authentication (default: loopback only).
	LMTPFrom []string `yaml:"lmtp_from"`
	// MaxMessageSize bounds a message relayed by LMTP (default 64 MiB).
	MaxMessageSize int64 `yaml:"max_message_size"`
	// SpoolDir holds the LMTP messages too large to keep in memory while they are
	// relayed, in files unlinked as soon as they are created (the data directory;
	// default the system's temporary directory).
	SpoolDir string `yaml:"-"`
	// RecipientDelimiter separates an LMTP recipient's extension (user+tag@domain): a
	// recipient the directory does not know is looked up without it, and its back-end
	// gets the user's address with it (routing.recipient_delimiter; default "+").
	RecipientDelimiter string `yaml:"-"`
}

// Deps are what the proxy asks.
type Deps struct {
	Auth      Authenticator
	Directory Directory
	Logger    *slog.Logger
	// Local are this process's own servers, for Config.ProxyMaybe.
	Local Local
}

// Server proxies IMAP and POP3 sessions. Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	auth  Authenticator
	dir   Directory
	log   *slog.Logger
	tls   map[string]*tls.Config // per back-end
	local Local

	masterSecret string
	health       *health
	sieveCaps    atomic.Value // []string: a ManageSieve back-end's capability lines
	lmtpFrom     []netip.Prefix
	lmtpMem      atomic.Int64 // bytes of LMTP messages held in memory, all sessions
	saslIR       sync.Map     // back-end address → struct{}: its IMAP greeting offers SASL-IR

	group connlimit.Group // listeners and sessions, for Close
}

// New checks cfg and returns a proxy.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Auth == nil || deps.Directory == nil {
		return nil, errors.New("proxy: an authenticator and a directory are required")
	}
	if cfg.TLSConfig == nil {
		return nil, errors.New("proxy: no TLS certificate (passwords only over TLS)")
	}
	if len(cfg.Backends) == 0 && !cfg.ProxyMaybe {
		return nil, errors.New("proxy: no back-ends")
	}
	if cfg.ProxyMaybe && cfg.LocalHost == "" {
		return nil, errors.New("proxy: proxy_maybe needs local_host, this node's mail host name")
	}
	if cfg.DefaultHost != "" {
		if _, ok := cfg.Backends[cfg.DefaultHost]; !ok {
			return nil, fmt.Errorf("proxy: default_host %q is not a back-end", cfg.DefaultHost)
		}
	}
	s := &Server{auth: deps.Auth, dir: deps.Directory, log: deps.Logger, tls: map[string]*tls.Config{}, local: deps.Local}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("server", "proxy")
	for name, b := range cfg.Backends {
		if b.IMAP == "" && b.POP3 == "" && b.ManageSieve == "" && b.LMTP == "" {
			return nil, fmt.Errorf("proxy: back-end %q has no address", name)
		}
		for _, a := range []string{b.IMAP, b.POP3, b.ManageSieve, b.LMTP} {
			if a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("proxy: back-end %q: address %q: %w", name, a, err)
			}
		}
		if !b.TLS {
			continue
		}
		tc := &tls.Config{ServerName: b.ServerName, InsecureSkipVerify: b.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if b.CAFile != "" {
			pem, err := os.ReadFile(b.CAFile)
			if err != nil {
				return nil, fmt.Errorf("proxy: back-end %q: ca_file: %w", name, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("proxy: back-end %q: ca_file %s holds no certificate", name, b.CAFile)
			}
		}
		s.tls[name] = tc
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ConnectTimeout, 10*time.Second)
	def(&cfg.IdleTimeout, 30*time.Minute)
	def(&cfg.LoginTimeout, time.Minute)
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defInt(&cfg.MaxConnections, 10000)
	defInt(&cfg.MaxConnectionsPerIP, 50)
	defInt(&cfg.MaxLoginConnections, 1000)
	if cfg.MaxLoginAttempts <= 0 {
		cfg.MaxLoginAttempts = 3
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MasterUser != "" {
		secret, err := ReadMasterSecret(cfg.MasterSecretFile)
		if err != nil {
			return nil, err
		}
		s.masterSecret = secret
	}
	if len(cfg.LMTPFrom) == 0 {
		cfg.LMTPFrom = []string{"127.0.0.0/8", "::1/128"}
	}
	lf, err := netlist.Prefixes(cfg.LMTPFrom)
	if err != nil {
		return nil, fmt.Errorf("proxy: lmtp_from: %w", err)
	}
	s.lmtpFrom = lf
	if cfg.RecipientDelimiter == "" {
		cfg.RecipientDelimiter = "+" // the router's default
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 64 << 20
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	s.cfg = cfg
	s.health = newHealth(s)
	return s, nil
}

// protocol is what differs between IMAP and POP3 sessions.
type protocol interface {
	name() string
	// refuse is the line for a connection there is no slot for.
	refuse(err error) string
	// login talks to the client until it has authenticated, and returns the user, the
	// password and the tag of its command (IMAP), or ok false when the session ended.
	login(c *clientConn) (cred credentials, ok bool)
	// backendLogin logs cred in on the back-end connection (greeting read by it); its
	// error is a *backendError when the back-end answered, otherwise a connection failure.
	// addr is the back-end's address, for what the proxy learned of it (pipelining).
	backendLogin(b *bufio.ReadWriter, addr string, cred credentials) (okLine string, err error)
	// loggedIn tells the client it is in, with the back-end's own answer.
	loggedIn(c *clientConn, cred credentials, okLine string)
	// unavailable tells the client the back-end cannot be reached (temporary).
	unavailable(c *clientConn, cred credentials)
	// rejected passes on a back-end's refusal of the login.
	rejected(c *clientConn, cred credentials, line string)
	// backendAddr is the back-end's address for this protocol.
	backendAddr(b Backend) string
	// localListener is this process's own server of the protocol (ProxyMaybe).
	localListener(l Local) *PipeListener
	// linkTLS says whether Backend.TLS applies to the protocol's link.
	linkTLS() bool
}

type credentials struct {
	tag, user, password string
	// master is the proxy's master user, password then its secret (Config.MasterUser).
	master string
}

// plain is the SASL PLAIN response logging cred in at a back-end.
func (cred credentials) plain() string {
	if cred.master != "" {
		return base64.StdEncoding.EncodeToString([]byte(cred.user + "\x00" + cred.master + "\x00" + cred.password))
	}
	return encodePlain(cred.user, cred.password)
}

// backendError is a back-end's answer refusing the login.
type backendError struct{ line string }

func (e *backendError) Error() string { return "back-end refused: " + e.line }

// ServeIMAP serves IMAP clients on ln; implicitTLS says ln's connections are TLS from the
// first byte (imaps), otherwise the client must use STARTTLS before logging in.
func (s *Server) ServeIMAP(ln net.Listener, implicitTLS bool) error {
	return s.serve(ln, implicitTLS, imapProto{s})
}

// ServePOP3 serves POP3 clients on ln (pop3s with implicitTLS, else STLS).
func (s *Server) ServePOP3(ln net.Listener, implicitTLS bool) error {
	return s.serve(ln, implicitTLS, pop3Proto{s})
}

// ServeManageSieve serves ManageSieve clients on ln (STARTTLS, RFC 5804 §2.2).
func (s *Server) ServeManageSieve(ln net.Listener) error {
	return s.serve(ln, false, sieveProto{s})
}

func (s *Server) serve(ln net.Listener, implicitTLS bool, p protocol) error {
	if !s.group.Listen(ln) {
		return net.ErrClosed
	}
	defer s.group.Unlisten(ln)
	pool := connlimit.NewPool(connlimit.Limits{MaxConnections: s.cfg.MaxConnections,
		MaxConnectionsPerIP: s.cfg.MaxConnectionsPerIP, MaxLoginConnections: s.cfg.MaxLoginConnections,
		LoginTimeout: s.cfg.LoginTimeout})
	for {
		raw, err := connlimit.Accept(ln, func(err error, wait time.Duration) {
			s.log.Warn("proxy accept", "proto", p.name(), "err", err, "retry_in", wait)
		})
		if err != nil {
			if s.group.Closed() {
				return net.ErrClosed
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		cork := &corkConn{Conn: raw}
		raw = cork
		if implicitTLS {
			raw = tls.Server(cork, s.cfg.TLSConfig)
		}
		ip := connlimit.RemoteIP(raw)
		slot, err := pool.Admit(ip, func(error) { raw.Close() })
		if err != nil {
			connlimit.Refuse(raw, p.refuse(err))
			continue
		}
		if !s.group.Go(raw, func() {
			defer slot.Release()
			defer raw.Close()
			c := &clientConn{srv: s, conn: raw, cork: cork, ip: ip, tls: implicitTLS}
			c.r = bufio.NewReaderSize(raw, 4096)
			s.session(c, p, slot)
		}) {
			slot.Release()
			raw.Close()
			return net.ErrClosed
		}
	}
}

// Close stops the listeners and closes every connection, then waits for the sessions.
func (s *Server) Close() error {
	s.group.Close()
	s.health.stop()
	return nil
}

// Down lists the back-end addresses whose last health check (or session connect)
// failed: their users get the temporary error until a check succeeds.
func (s *Server) Down() []string { return s.health.downAddrs() }

// clientConn is the client's side of a session.
type clientConn struct {
	srv  *Server
	conn net.Conn
	cork *corkConn // the TCP connection under conn's TLS
	r    *bufio.Reader
	ip   netip.Addr
	tls  bool
}

func (c *clientConn) writeLine(line string) error {
	c.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := io.WriteString(c.conn, line+"\r\n")
	return err
}

// startTLS upgrades the connection after the protocol's go-ahead. Bytes the client sent
// after the command, before the handshake, are refused (RFC 3207 §4.2's injection, same
// in IMAP and POP3): the connection is closed.
func (c *clientConn) startTLS() bool {
	if c.r.Buffered() > 0 {
		return false
	}
	tc := tls.Server(c.conn, c.srv.cfg.TLSConfig)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		return false
	}
	tc.SetDeadline(time.Time{})
	c.conn, c.tls = tc, true
	c.r = bufio.NewReaderSize(tc, 4096)
	return true
}

// session logs the client in, finds and logs in to its back-end, and relays.
func (s *Server) session(c *clientConn, p protocol, slot *connlimit.Conn) {
	cred, ok := p.login(c)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	u, err := s.dir.Lookup(ctx, cred.user)
	host := u.MailHost
	if host == directory.HostHere {
		host = s.cfg.DefaultHost
	}
	b, known := s.cfg.Backends[host]
	addr := ""
	var dial func(context.Context) (net.Conn, error)
	if s.cfg.ProxyMaybe && host == s.cfg.LocalHost {
		// proxy_maybe: the user lives here; this process's own server, in memory.
		if pl := p.localListener(s.local); pl != nil {
			addr, dial = "local", pl.DialContext
		}
	} else if known {
		addr = p.backendAddr(b)
		dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	switch {
	case err != nil:
		s.log.Warn("proxy: directory lookup failed", "proto", p.name(), "user", cred.user, "remote", c.ip, "err", err)
		p.unavailable(c, cred)
		return
	case u.State == directory.StateMoving:
		s.log.Info("proxy: mailbox being moved", "proto", p.name(), "user", cred.user, "remote", c.ip)
		p.unavailable(c, cred)
		return
	case addr == "":
		s.log.Error("proxy: user's mail host is not a back-end of this protocol", "proto", p.name(), "user", cred.user, "mail_host", u.MailHost)
		p.unavailable(c, cred)
		return
	case !s.health.up(addr):
		s.log.Warn("proxy: back-end down (health check)", "proto", p.name(), "user", cred.user, "backend", host, "addr", addr)
		p.unavailable(c, cred)
		return
	}
	if s.masterSecret != "" {
		cred.master, cred.password = s.cfg.MasterUser, s.masterSecret
	}
	bc, okLine, err := s.dialBackend(ctx, c, host, addr, dial, p, cred)
	if err != nil {
		var be *backendError
		if errors.As(err, &be) {
			s.log.Warn("proxy: back-end refused the login", "proto", p.name(), "user", cred.user, "backend", host, "answer", be.line)
			p.rejected(c, cred, be.line)
			return
		}
		s.log.Warn("proxy: back-end unavailable", "proto", p.name(), "user", cred.user, "backend", host, "addr", addr, "err", err)
		s.health.failed(addr)
		p.unavailable(c, cred)
		return
	}
	defer bc.conn.Close()
	slot.LoggedIn()
	s.log.Info("proxy login", "proto", p.name(), "user", cred.user, "remote", c.ip, "backend", host)
	p.loggedIn(c, cred, okLine)
	var more func([]byte) bool
	if p.name() == "imap" {
		more = imapIncomplete
	}
	s.relay(c, bc, more)
}

// backendConn is the back-end's side of a session.
type backendConn struct {
	conn net.Conn
	rw   *bufio.ReadWriter
}

// dialBackend connects to addr, sends the PROXY v2 header with the client's address,
// starts TLS if configured and logs cred in.
func (s *Server) dialBackend(ctx context.Context, c *clientConn, host, addr string, dial func(context.Context) (net.Conn, error), p protocol, cred credentials) (*backendConn, string, error) {
	h := proxyproto.HeaderProxyFromAddrs(2, c.conn.RemoteAddr(), c.conn.LocalAddr())
	if c.tls {
		// The client came over TLS: the back-end may take its login on a plaintext link
		// from this trusted proxy (proxylisten.ClientTLS).
		if err := h.SetTLVs([]proxyproto.TLV{proxylisten.SSLTLV()}); err != nil {
			return nil, "", err
		}
	}
	conn, err := s.connect(ctx, host, addr, dial, p.linkTLS(), h)
	if err != nil {
		return nil, "", err
	}
	bc := &backendConn{conn: conn, rw: bufio.NewReadWriter(bufio.NewReaderSize(conn, 4096), bufio.NewWriter(conn))}
	okLine, err := p.backendLogin(bc.rw, addr, cred)
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	if hc, ok := conn.(*headerConn); ok && hc.pending == nil {
		bc.conn = hc.Conn // the relay reads the TCP connection itself (readMore)
	}
	bc.conn.SetDeadline(time.Time{})
	return bc, okLine, nil
}

// connect opens a connection to a back-end's addr with dial, sends the PROXY header h
// (if any) and starts TLS if the back-end is configured so; its deadline is ctx's.
func (s *Server) connect(ctx context.Context, host, addr string, dial func(context.Context) (net.Conn, error), useTLS bool, h *proxyproto.Header) (net.Conn, error) {
	raw, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	if h != nil {
		b, err := h.Format()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("PROXY header: %w", err)
		}
		raw = &headerConn{Conn: raw, pending: b}
	}
	tc := s.tls[host]
	if tc == nil || !useTLS || addr == "local" {
		return raw, nil
	}
	tc = tc.Clone()
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(addr)
	}
	t := tls.Client(raw, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return t, nil
}

// relay copies both ways until either side closes, or neither sends anything for
// IdleTimeout. Bytes already read into the buffers go first. Idleness is watched by a
// timer rather than a deadline per read and write: setting deadlines on every chunk was
// a measurable share of the proxy's CPU per command. more, if not nil, says whether a
// chunk from the back-end ends before its response does: then what the back-end has
// already sent is read too, without waiting, and goes to the client in the same write.
func (s *Server) relay(c *clientConn, b *backendConn, more func([]byte) bool) {
	var last atomic.Int64
	now := func() int64 { return time.Now().UnixNano() }
	last.Store(now())
	idle := s.cfg.IdleTimeout
	closeBoth := func() {
		c.conn.Close()
		b.conn.Close()
	}
	var watch *time.Timer
	watch = time.AfterFunc(idle, func() {
		if left := idle - time.Duration(now()-last.Load()); left > 0 {
			watch.Reset(left)
			return
		}
		closeBoth()
	})
	defer watch.Stop()
	c.conn.SetDeadline(time.Time{})
	b.conn.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	pipe := func(dst net.Conn, src net.Conn, buffered *bufio.Reader, toClient bool) {
		defer func() { done <- struct{}{} }()
		if n := buffered.Buffered(); n > 0 {
			p, _ := buffered.Peek(n)
			if _, err := dst.Write(p); err != nil {
				return
			}
		}
		// A chunk over a record's worth goes out of crypto/tls as several records:
		// gathered under the cork, they take one system call.
		cork := toClient && c.tls && c.cork != nil
		write := func(p []byte) error {
			corked := cork && len(p) > 1024
			if corked {
				c.cork.cork()
			}
			_, err := dst.Write(p)
			if corked {
				if uerr := c.cork.uncork(); err == nil {
					err = uerr
				}
			}
			return err
		}
		// A plaintext back-end link is read into a pooled buffer taken only when data
		// has come (readPooled); otherwise a buffer of a TLS record's size (crypto/tls
		// returns at most one record per read) is held by the session.
		var rc syscall.RawConn
		if tc, ok := src.(*net.TCPConn); ok && toClient {
			rc, _ = tc.SyscallConn()
		}
		var buf []byte
		if rc == nil {
			buf = make([]byte, 16<<10)
		}
		for {
			var (
				n   int
				err error
				bp  *[]byte
			)
			if rc != nil {
				bp, n, err = readPooled(rc)
				if bp != nil {
					buf = *bp
				}
			} else {
				n, err = src.Read(buf)
			}
			if n > 0 {
				last.Store(now())
				if toClient && more != nil && err == nil && more(buf[:n]) {
					n = readMore(src, buf, n)
				}
				werr := write(buf[:n])
				if bp != nil {
					relayBufs.Put(bp)
				}
				if werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(b.conn, c.conn, c.r, false)
	go pipe(c.conn, b.conn, b.rw.Reader, true)
	<-done
	// One side ended: end the other, so that its pipe returns too.
	closeBoth()
	<-done
}

// temporary says whether an authentication error is worth retrying later.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// authenticate asks the authenticator, bounded by ConnectTimeout.
func (s *Server) authenticate(c *clientConn, user, password string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	return s.auth.Authenticate(ctx, user, password, c.ip)
}
