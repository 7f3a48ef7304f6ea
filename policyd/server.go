package policyd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/internal/sockaddr"
	"github.com/portcullis-mail/portcullis/policy"
)

// Config configures the policy-delegation server (the `policyd:` section).
type Config struct {
	// Addr is where Postfix's check_policy_service connects: host:port
	// ("127.0.0.1:10040", Postfix's inet:127.0.0.1:10040) or unix:/path (a socket made
	// mode 0666, as Postfix's own public sockets; put it in a directory only Postfix can
	// reach). Empty (the default) disables the server.
	Addr string `yaml:"addr"`
	// MaxConnections bounds the connections at once (default 200: Postfix keeps one per
	// smtpd process, 100 by default); a connection over the limit is closed at once.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection that sends no request for this long, and bounds
	// the time to send one request (default 10m; Postfix closes its side after
	// smtpd_policy_service_max_idle, 300s).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PolicyTimeout bounds the work for one request (default 60s, under Postfix's
	// smtpd_policy_service_timeout of 100s).
	PolicyTimeout time.Duration `yaml:"policy_timeout"`
	// MaxLineLength bounds one attribute line, name=value (default 4096; Postfix's own
	// line_length_limit is 2048).
	MaxLineLength int `yaml:"max_line_length"`
	// MaxAttributes bounds the attributes of one request (default 128; Postfix 3.7 sends
	// about 40).
	MaxAttributes int `yaml:"max_attributes"`
	// MaxTransactions bounds the mail transactions remembered at once, by the request's
	// instance attribute (default 10000); the least recently used is forgotten first.
	MaxTransactions int `yaml:"max_transactions"`
	// TransactionTTL forgets a transaction not seen for this long (default 1h).
	TransactionTTL time.Duration `yaml:"transaction_ttl"`
	// TrustedNetworks (CIDRs or addresses) make a client trusted (client.trusted in
	// rules). Set from the server config's top-level trusted_networks.
	TrustedNetworks []string `yaml:"-"`
}

func (c *Config) defaults() {
	if c.MaxConnections <= 0 {
		c.MaxConnections = 200
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.PolicyTimeout <= 0 {
		c.PolicyTimeout = 60 * time.Second
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = 4096
	}
	if c.MaxAttributes <= 0 {
		c.MaxAttributes = 128
	}
	if c.MaxTransactions <= 0 {
		c.MaxTransactions = 10000
	}
	if c.TransactionTTL <= 0 {
		c.TransactionTTL = time.Hour
	}
}

// Engine evaluates one stage of a transaction: *policy.Engine.
type Engine interface {
	Evaluate(ctx context.Context, stage policy.Stage, tx *policy.Transaction) policy.Decision
}

// DecisionRecorder receives the answers worth a record in the decision log (every
// refusal, each accepted recipient); cmd/portcullis joins it to package decisionlog.
// Decided runs on the request's path: it must copy what it needs (tx is valid during the
// call only) and return at once. d.Stage is the stage that decided; rcpts are the
// recipients the answer is for (none before RCPT).
type DecisionRecorder interface {
	Decided(tx *policy.Transaction, d policy.Decision, reply string, rcpts []string)
}

// Deps is what the server is given.
type Deps struct {
	Engine Engine
	// Decisions, when set, receives the answers for the decision log.
	Decisions DecisionRecorder
	Logger    *slog.Logger
}

// Server answers Postfix policy-delegation requests with the engine's decisions.
type Server struct {
	cfg     Config
	eng     Engine
	rec     DecisionRecorder
	log     *slog.Logger
	trusted []netip.Prefix
	txns    *transactions
	slots   chan struct{}

	group connlimit.Group // listeners and connections, for Close
}

// New checks cfg and returns a server; it does no I/O.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.defaults()
	if deps.Engine == nil {
		return nil, errors.New("policyd: no engine")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, eng: deps.Engine, rec: deps.Decisions, log: deps.Logger,
		txns:  newTransactions(cfg.MaxTransactions, cfg.TransactionTTL),
		slots: make(chan struct{}, cfg.MaxConnections)}
	trusted, err := netlist.Prefixes(cfg.TrustedNetworks)
	if err != nil {
		return nil, fmt.Errorf("policyd: trusted_networks: %w", err)
	}
	s.trusted = trusted
	return s, nil
}

// Listen opens addr ("unix:/path", "host:port" or "inet:host:port") with listen for TCP
// (net.Listen when nil); a unix socket replaces a dead server's and is mode 0666 so that
// Postfix, another user, can connect (internal/sockaddr).
func Listen(addr string, listen func(network, address string) (net.Listener, error)) (net.Listener, error) {
	ln, err := sockaddr.Listen(addr, listen)
	if err != nil {
		return nil, fmt.Errorf("policyd: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve accepts connections on ln until Close; it returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	if !s.group.Listen(ln) {
		ln.Close()
		return nil
	}
	defer s.group.Unlisten(ln)
	for {
		c, err := connlimit.Accept(ln, func(err error, wait time.Duration) {
			s.log.Warn("policyd accept", "err", err, "retry_in", wait)
		})
		if err != nil {
			if s.group.Closed() {
				return nil
			}
			return fmt.Errorf("policyd: accept: %w", err)
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("policyd connection refused: max_connections reached", "remote", c.RemoteAddr().String(), "max_connections", s.cfg.MaxConnections)
			c.Close()
			continue
		}
		if !s.group.Go(c, func() {
			defer func() { <-s.slots }()
			s.serveConn(c)
		}) {
			<-s.slots
			c.Close()
			return nil
		}
	}
}

// Close stops the listeners and closes every connection, then waits for their
// goroutines.
func (s *Server) Close() error {
	s.group.Close()
	return nil
}

// serveConn answers requests on one connection (Postfix reuses it) until the client
// closes it, it idles too long, or a request breaks the protocol: then it logs and
// closes without replying, as SMTPD_POLICY_README asks ("In case of trouble the policy
// server must not send a reply. Instead the server must log a warning and disconnect").
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, s.cfg.MaxLineLength+2)
	bw := bufio.NewWriter(c)
	lim := Limits{MaxLine: s.cfg.MaxLineLength, MaxAttributes: s.cfg.MaxAttributes}
	for {
		c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		req, err := ReadRequest(br, lim)
		if err != nil {
			if errors.Is(err, ErrMalformed) || isTimeout(err) {
				s.log.Warn("policyd request refused; closing without a reply", "remote", c.RemoteAddr().String(), "err", err.Error())
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PolicyTimeout)
		action, err := s.Answer(ctx, req)
		cancel()
		if err != nil {
			s.log.Warn("policyd request refused; closing without a reply", "remote", c.RemoteAddr().String(), "err", err.Error())
			return
		}
		c.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
		bw.WriteString("action=")
		bw.WriteString(action)
		bw.WriteString("\n\n")
		if bw.Flush() != nil {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
