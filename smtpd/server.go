package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/internal/sockaddr"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/spool"
)

// Engine decides each stage. *policy.Engine implements it.
type Engine interface {
	Evaluate(ctx context.Context, stage policy.Stage, tx *policy.Transaction) policy.Decision
}

// EngineFunc adapts a function to Engine.
type EngineFunc func(ctx context.Context, stage policy.Stage, tx *policy.Transaction) policy.Decision

// Evaluate calls f.
func (f EngineFunc) Evaluate(ctx context.Context, stage policy.Stage, tx *policy.Transaction) policy.Decision {
	return f(ctx, stage, tx)
}

// Spool takes accepted messages; *spool.Spool implements it. Enqueue must return only
// once the message and its envelope are durable (fsynced); the 250 reply waits for it.
type Spool interface {
	Enqueue(ctx context.Context, env spool.Envelope, msg io.Reader) (id string, err error)
}

// RecipientValidator says whether a recipient in a local domain exists. false gets
// 550 5.1.1; an error gets 451 4.3.0. *route.Router implements it.
type RecipientValidator interface {
	ValidRecipient(ctx context.Context, rcpt address.Address) (bool, error)
}

// SenderOwners says whether an authenticated user owns an envelope sender (the null
// sender too), as Postfix's smtpd_sender_login_maps: rules see the answer as
// sender.owned. An error gets 451 4.3.0. *route.Router implements it.
type SenderOwners interface {
	SenderOwned(ctx context.Context, user string, sender address.Address) (bool, error)
}

// LocalDeliverer delivers a message to one recipient at the end of an LMTP transaction;
// *local.Deliverer (delivery/local) implements it. The error is classified by behaviour
// (see replyOf): an error with a method SMTPReply() string is answered with that reply,
// any other error with 451 4.3.0.
type LocalDeliverer interface {
	Deliver(ctx context.Context, rcpt string, env spool.Envelope, msg io.Reader) error
}

// Authenticator checks AUTH PLAIN and LOGIN credentials and returns the canonical user
// name; the auth package's Service.Auth implements it. An error with a method
// Temporary() bool that returns true (the user database is down, too many failures)
// gets 454 4.7.0; any other error 535 5.7.8.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// Deps are the server's collaborators.
type Deps struct {
	Engine Engine // nil accepts everything that passes relay control and the limits
	// Spool takes the messages of mx and submission listeners; required unless every
	// listener is lmtp (LMTP uses it only for quarantined messages).
	Spool Spool
	// Local delivers each recipient of an lmtp listener at the end of DATA (see lmtp.go);
	// required when a listener is lmtp.
	Local LocalDeliverer
	// Quota, when set, is asked at RCPT whether a message of size bytes (MAIL SIZE=, 0
	// when not given) fits in a local recipient's mailbox, on lmtp listeners and for the
	// local domains of the others. An error with a method SMTPReply() string (such as
	// local.Deliverer.CheckQuota's "452 4.2.2 mailbox full") is answered; other errors
	// are logged and the recipient accepted (delivery decides).
	Quota func(ctx context.Context, rcpt string, size int64) error
	// Auth checks AUTH PLAIN/LOGIN credentials on submission listeners; nil offers no AUTH.
	Auth Authenticator
	// Resolver is used for forward-confirmed reverse DNS at connect; nil skips it.
	Resolver dnsx.Resolver
	// Recipients validates local recipients; nil accepts every local recipient.
	Recipients RecipientValidator
	// Senders is asked at MAIL whether an authenticated user owns the sender (rules:
	// sender.owned); nil: an authenticated user owns every sender.
	Senders SenderOwners
	// PrepareMessage may rewrite the received message before the data stage, e.g. to
	// strip forged Authentication-Results headers (dkim.StripForgedAuthResults). It gets
	// the raw message (CRLF line endings) and returns the message to use.
	PrepareMessage func(ctx context.Context, tx *policy.Transaction, raw []byte) ([]byte, error)
	// Milters are asked, in order, at each stage the rules did not refuse, on mx and
	// submission listeners (Config.Milters names them; cmd/portcullis builds them with
	// package milter). Their header changes and body replacement are applied to the
	// message before it is queued.
	Milters []Milter
	// Listen opens the TCP sockets of the listeners; nil: net.Listen. portcullis serve
	// hands over the sockets it bound as root before dropping privileges.
	Listen func(network, address string) (net.Listener, error)
	// TempFile creates the file a large message goes to while it arrives (see msgbuf.go);
	// it should be in the queue's file system and leave nothing behind when closed. nil:
	// the Spool's CreateTemp method when it has one (*spool.Spool does), else an unlinked
	// file in os.TempDir().
	TempFile func() (*os.File, error)
	// FreeSpace returns the bytes free in the queue's file system, checked at MAIL
	// against Config.QueueMinFree. nil: the Spool's FreeSpace method when it has one
	// (*spool.Spool does), else no check. LMTP listeners, which write to the mail store,
	// are not checked.
	FreeSpace func() (int64, error)
	// TLSConfig overrides the certificate of Config.TLS (see LoadTLSConfig).
	TLSConfig *tls.Config
	// Limiter counts connections, new TLS sessions, AUTH, MAIL and RCPT commands against
	// rate limits (package ratelimit); nil: no rate limits (see limits.go).
	Limiter Limiter
	// Decisions, when set, receives every answer that ends a recipient, a message or a
	// connection (the decision log); it must not block.
	Decisions DecisionRecorder
	Logger    *slog.Logger          // nil: slog.Default()
	Metrics   prometheus.Registerer // nil: no metrics
}

// Server is the SMTP server. Create it with New, then Serve.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	m       *metrics
	trusted []netip.Prefix
	local   map[string]bool

	mu        sync.Mutex
	listeners []*listener
	total     int // connections of all listeners (Config.MaxConnections)
	conns     map[*conn]struct{}
	tlsConfig *tls.Config

	closing   atomic.Bool
	stopped   chan struct{}            // closed when Shutdown has finished
	mem       *memBudget               // Config.MaxDataMemory (see msgbuf.go)
	tempFile  func() (*os.File, error) // where large messages go while they arrive
	freeSpace func() (int64, error)    // the queue's free space; nil: not checked
	freeAt    atomic.Int64             // when freeBytes was read (Unix ns); 0: never
	freeBytes atomic.Int64             // the last reading of freeSpace
	wg        sync.WaitGroup           // accept loops, and each connection until it is closed
	errorLog  *log.Logger              // go-smtp's, into s.log
}

type listener struct {
	cfg  ListenerConfig
	ln   net.Listener // raw (or PROXY) listener
	gate *gate

	// The listener's own connection pool (ListenerConfig.MaxConnections and
	// MaxConnectionsPerIP), guarded by Server.mu.
	active int
	perIP  map[netip.Addr]int

	xclient []netip.Prefix // ListenerConfig.XClientFrom
}

// New checks cfg and returns a server. It does no I/O: sockets are opened by Listen (or
// Serve) and the certificate is loaded there.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.Defaults()
	trusted, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if err := checkLMTPDeps(cfg, deps); err != nil {
		return nil, err
	}
	if err := checkMilters(cfg.Milters); err != nil {
		return nil, fmt.Errorf("smtpd: %w", err)
	}
	for _, l := range cfg.Listeners {
		if *l.RequireAuth && deps.Auth == nil {
			return nil, fmt.Errorf("smtpd: listener %q requires AUTH but no authenticator is configured", l.Name)
		}
	}
	s := &Server{
		cfg: cfg, deps: deps, trusted: trusted,
		local:   make(map[string]bool),
		conns:   make(map[*conn]struct{}),
		log:     deps.Logger,
		stopped: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.mem = newMemBudget(int64(cfg.MaxDataMemory))
	s.tempFile, s.freeSpace = deps.TempFile, deps.FreeSpace
	if t, ok := deps.Spool.(interface{ CreateTemp() (*os.File, error) }); ok && s.tempFile == nil {
		s.tempFile = t.CreateTemp
	}
	if s.tempFile == nil {
		s.tempFile = tempFileIn(os.TempDir())
	}
	if f, ok := deps.Spool.(interface{ FreeSpace() (int64, error) }); ok && s.freeSpace == nil {
		s.freeSpace = f.FreeSpace
	}
	s.errorLog = log.New(slogWriter{s.log}, "", 0)
	for _, d := range cfg.LocalDomains {
		s.local[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	s.m, err = newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("smtpd: register metrics: %w", err)
	}
	return s, nil
}

// Listen opens every listener's socket (and loads the TLS certificate when needed). Serve
// calls it when it has not been called; call it yourself to learn the addresses of
// listeners configured with port 0.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners != nil {
		return nil
	}
	s.tlsConfig = s.deps.TLSConfig
	if s.tlsConfig == nil {
		tc, err := LoadTLSConfig(s.cfg)
		if err != nil {
			return err
		}
		s.tlsConfig = tc
	}
	var out []*listener
	for _, lc := range s.cfg.Listeners {
		raw, err := listen(lc, s.deps.Listen)
		if err != nil {
			for _, l := range out {
				l.ln.Close()
			}
			return fmt.Errorf("smtpd: listen %s on %s: %w", lc.Name, lc.Addr, err)
		}
		ln := raw
		if lc.ProxyProtocol {
			pl := &proxyproto.Listener{Listener: raw, ReadHeaderTimeout: 10 * time.Second}
			if len(lc.ProxyFrom) > 0 {
				pol, err := proxyproto.TrustProxyHeaderFromRanges(lc.ProxyFrom)
				if err != nil {
					raw.Close()
					return fmt.Errorf("smtpd: listener %s: proxy_from: %w", lc.Name, err)
				}
				pl.ConnPolicy = pol
			} else {
				pl.ConnPolicy = func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
					return proxyproto.REQUIRE, nil
				}
			}
			ln = pl
		}
		xc, err := netlist.Prefixes(lc.XClientFrom)
		if err != nil { // validated by New
			ln.Close()
			return fmt.Errorf("smtpd: listener %s: xclient_from: %w", lc.Name, err)
		}
		l := &listener{cfg: lc, ln: ln, perIP: make(map[netip.Addr]int), xclient: xc}
		l.gate = &gate{srv: s, l: l}
		out = append(out, l)
	}
	s.listeners = out
	return nil
}

// newSMTPServer returns the go-smtp server of one connection. One per connection, because
// go-smtp's Debug tap, the only place where the plaintext above TLS can be seen, is a
// server field (see tap).
func (s *Server) newSMTPServer(l *listener, t *tap) *smtp.Server {
	ss := smtp.NewServer(&backend{srv: s, l: l})
	ss.Domain = s.cfg.Hostname
	ss.MaxMessageBytes = int64(s.cfg.MaxMessageSize)
	ss.MaxRecipients = s.cfg.MaxRecipients
	ss.MaxLineLength = int(s.cfg.MaxLineSize)
	ss.WriteTimeout = s.cfg.CommandTimeout
	ss.ReadTimeout = 0 // deadlines are set by conn (see conn.go)
	ss.ErrorLog = s.errorLog
	ss.Debug = t
	if l.cfg.Mode != ModeSubmissions && !sockaddr.IsUnix(l.cfg.Addr) {
		ss.TLSConfig = s.tlsConfig // STARTTLS; on port 25 too (opportunistic)
	}
	ss.LMTP = l.cfg.Mode == ModeLMTP
	// ModeSubmissions: admit hands over a *tls.Conn after the handshake; no STARTTLS.
	return ss
}

// oneConn is the net.Listener of a per-connection go-smtp server: it yields its
// connection once, then blocks until the connection is closed, which ends go-smtp's Serve.
type oneConn struct {
	c      net.Conn
	closed <-chan struct{}
	addr   net.Addr
	once   sync.Once
}

func (o *oneConn) Accept() (net.Conn, error) {
	var c net.Conn
	o.once.Do(func() { c = o.c })
	if c != nil {
		return c, nil
	}
	<-o.closed
	return nil, net.ErrClosed
}

func (o *oneConn) Close() error   { return nil }
func (o *oneConn) Addr() net.Addr { return o.addr }

// Addr returns the address of the listener named name, nil before Listen.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			return l.ln.Addr()
		}
	}
	return nil
}

// Serve serves every listener until ctx ends (then it shuts down gracefully, waiting up
// to Config.ShutdownTimeout for sessions in progress) or Shutdown is called. It returns
// nil after a graceful shutdown, or the shutdown's error.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ls := s.listeners
	s.mu.Unlock()
	for _, l := range ls {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.gate.run()
		}()
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		return s.Shutdown(sctx)
	case <-s.stopped:
		return nil // Shutdown was called
	}
}

// Shutdown stops accepting connections, closes idle sessions with 421, lets sessions in
// the middle of a mail transaction finish, and closes whatever is left when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closing.Swap(true) {
		select {
		case <-s.stopped:
		case <-ctx.Done():
		}
		return nil
	}
	defer close(s.stopped)
	s.mu.Lock()
	ls := s.listeners
	for c := range s.conns {
		c.interruptIdle()
	}
	s.mu.Unlock()
	for _, l := range ls {
		_ = l.gate.Close()
	}
	// s.wg counts the accept loops and every connection until it is closed.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	left := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left {
		c.Close() // outside s.mu: Close releases the connection's slot under it
	}
	<-done
	return ctx.Err()
}

// gate runs a listener's accept loop; each connection is admitted in its own goroutine
// (PROXY header, limits, TLS handshake on implicit-TLS ports, FCrDNS and the connect
// stage) and then served by go-smtp.
type gate struct {
	srv  *Server
	l    *listener
	once sync.Once
}

func (g *gate) Close() error {
	var err error
	g.once.Do(func() { err = g.l.ln.Close() })
	return err
}

func (g *gate) run() {
	var delay time.Duration
	for {
		c, err := g.l.ln.Accept()
		if err != nil {
			if g.srv.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off (as net/http does).
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.srv.log.Warn("smtp accept error", "listener", g.l.cfg.Name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		g.srv.wg.Add(1)
		go func() {
			defer g.srv.wg.Done()
			g.srv.admit(g, c)
		}()
	}
}

// slogWriter turns go-smtp's log.Logger output into slog records.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("go-smtp", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// newID returns a session id: time-ordered, unique, 14 characters of base32.
func newID() string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ" // Crockford
	var b [14]byte
	t := uint64(time.Now().UnixMilli())
	for i := 7; i >= 0; i-- {
		b[i] = alphabet[t&31]
		t >>= 5
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	for i := range 6 {
		b[8+i] = alphabet[r[i]&31]
	}
	return string(b[:])
}
