package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"
	"golang.org/x/sync/semaphore"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/internal/sockaddr"
	"github.com/portcullis-mail/portcullis/policy"
)

// Config configures the milter server (the `milter:` section).
type Config struct {
	// Addr is where Postfix's smtpd_milters and non_smtpd_milters connect: host:port
	// ("127.0.0.1:10041", Postfix's inet:127.0.0.1:10041) or unix:/path (a socket made
	// mode 0666; put it in a directory only Postfix can reach). Empty (the default)
	// disables the server.
	Addr string `yaml:"addr"`
	// MaxConnections bounds the connections at once (default 200: Postfix opens one per
	// SMTP session); one over the limit is closed at once, and Postfix applies its
	// milter_default_action.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection on which Postfix sends nothing for this long
	// (default 15m, over Postfix's smtpd_timeout between two SMTP commands).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PolicyTimeout bounds the rules' work at one stage (default 25s, under Postfix's
	// milter_command_timeout of 30s; during the data stage portcullis also tells
	// Postfix every 10s that it is busy).
	PolicyTimeout time.Duration `yaml:"policy_timeout"`
	// MaxMessageSize is the largest message judged (default 32MiB, as smtp's); a
	// larger one is refused with 552 5.3.4.
	MaxMessageSize bytesize.Size `yaml:"max_message_size"`
	// MaxDataMemory bounds the memory all messages being received hold together
	// (default 512MiB): each holds its size plus what the data stage's policies make of
	// it; when the budget is exhausted a message gets 451 4.3.1 (Postfix's client
	// retries).
	MaxDataMemory bytesize.Size `yaml:"max_data_memory"`
	// TrustedNetworks (CIDRs or addresses) make a client trusted (client.trusted in
	// rules). Set from the server config's top-level trusted_networks.
	TrustedNetworks []string `yaml:"-"`
}

func (c *Config) defaults() {
	if c.MaxConnections <= 0 {
		c.MaxConnections = 200
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 15 * time.Minute
	}
	if c.PolicyTimeout <= 0 {
		c.PolicyTimeout = 25 * time.Second
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 32 << 20
	}
	if c.MaxDataMemory <= 0 {
		c.MaxDataMemory = 512 << 20
	}
}

// Engine evaluates one stage of a transaction: *policy.Engine.
type Engine interface {
	Evaluate(ctx context.Context, stage policy.Stage, tx *policy.Transaction) policy.Decision
}

// Deps is what the server is given.
type Deps struct {
	Engine Engine
	// Decisions, when set, receives the answers for the decision log.
	Decisions DecisionRecorder
	Logger    *slog.Logger
}

// DecisionRecorder receives the answers worth a record in the decision log: every
// refusal, and at end of message the verdict for each recipient (accepted, discarded,
// quarantined); cmd/portcullis joins it to package decisionlog. Decided runs on the
// milter's path: it must copy what it needs (tx is valid during the call only) and
// return at once. d.Stage is the stage that decided; rcpts are the recipients the
// answer is for (none before RCPT).
type DecisionRecorder interface {
	Decided(tx *policy.Transaction, d policy.Decision, reply string, rcpts []string)
}

// Server is the milter server: it runs the whole pipeline for Postfix.
type Server struct {
	cfg     Config
	eng     Engine
	rec     DecisionRecorder
	log     *slog.Logger
	trusted []netip.Prefix
	mem     *semaphore.Weighted
	srv     *gomilter.Server
	slots   chan struct{}
}

// policyFactor is what the data stage's policies allocate per byte of message on top
// of the message itself (smtpd measured 0.7 to 1.1 with the default rules).
const policyFactor = 1.25

// The actions portcullis may take at end of message: add and insert headers
// (Authentication-Results, X-Spam-*, the rules' add_header) and quarantine.
const actions = gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine

// What portcullis asks of the MTA's protocol: headers exactly as written (DKIM verifies
// them byte for byte); no reply to the header and end-of-header events, which only
// collect the message; no DATA and unknown-command events.
const protocol = gomilter.OptHeaderLeadingSpace | gomilter.OptNoHeaderReply | gomilter.OptNoEOHReply | gomilter.OptNoUnknown | gomilter.OptNoData

// negotiate takes of the actions and protocol options what the MTA offers, instead of
// refusing an MTA that lacks one (go-milter's default): an older MTA then sends headers
// without their leading space (Header puts it back) and waits for replies we give
// anyway. Version 6 at most; 2 at least (Sendmail 8.13's).
func negotiate(mtaVersion, milterVersion uint32, mtaActions, milterActions gomilter.OptAction, mtaProtocol, milterProtocol gomilter.OptProtocol, offered gomilter.DataSize) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	v := min(mtaVersion, milterVersion)
	if v < 2 {
		return 0, 0, 0, 0, fmt.Errorf("milter: MTA protocol version %d is too old", mtaVersion)
	}
	return v, milterActions & mtaActions, milterProtocol & mtaProtocol, gomilter.DataSize64K, nil
}

// The macros portcullis asks for at each stage, on top of those Postfix sends by default
// (milter_*_macros).
var macros = map[gomilter.MacroStage][]gomilter.MacroName{
	gomilter.StageConnect: {gomilter.MacroMTAFQDN, "_", gomilter.MacroClientAddr, gomilter.MacroClientName, gomilter.MacroClientPTR, gomilter.MacroDaemonAddr, gomilter.MacroDaemonPort, gomilter.MacroDaemonName},
	gomilter.StageHelo:    {gomilter.MacroTlsVersion, gomilter.MacroCipher},
	gomilter.StageMail:    {gomilter.MacroQueueId, gomilter.MacroAuthAuthen, gomilter.MacroAuthType, gomilter.MacroMailAddr},
	gomilter.StageRcpt:    {gomilter.MacroQueueId, gomilter.MacroRcptAddr},
	gomilter.StageEOM:     {gomilter.MacroQueueId},
}

// New checks cfg and returns a server; it does no I/O.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.defaults()
	if deps.Engine == nil {
		return nil, errors.New("milter: no engine")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, eng: deps.Engine, rec: deps.Decisions, log: deps.Logger,
		mem:   semaphore.NewWeighted(int64(cfg.MaxDataMemory)),
		slots: make(chan struct{}, cfg.MaxConnections)}
	trusted, err := netlist.Prefixes(cfg.TrustedNetworks)
	if err != nil {
		return nil, fmt.Errorf("milter: trusted_networks: %w", err)
	}
	s.trusted = trusted
	opts := []gomilter.Option{
		gomilter.WithDynamicMilter(func(uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize) gomilter.Milter {
			return &session{s: s}
		}),
		gomilter.WithActions(actions),
		gomilter.WithProtocols(protocol),
		gomilter.WithNegotiationCallback(negotiate),
		gomilter.WithReadTimeout(cfg.IdleTimeout),
		gomilter.WithWriteTimeout(30 * time.Second),
	}
	for st, names := range macros {
		opts = append(opts, gomilter.WithMacroRequest(st, names))
	}
	s.srv = gomilter.NewServer(opts...)
	// go-milter reports what a peer did wrong through one package variable (log.Printf
	// by default); the first server's logger gets it.
	logOnce.Do(func() {
		log := deps.Logger
		gomilter.LogWarning = func(format string, v ...any) { log.Warn("milter: " + fmt.Sprintf(format, v...)) }
	})
	return s, nil
}

var logOnce sync.Once

// Listen opens addr ("unix:/path", "host:port" or "inet:host:port") with listen for TCP
// (net.Listen when nil); a unix socket replaces a dead server's and is mode 0666 so that
// Postfix, another user, can connect (internal/sockaddr).
func Listen(addr string, listen func(network, address string) (net.Listener, error)) (net.Listener, error) {
	ln, err := sockaddr.Listen(addr, listen)
	if err != nil {
		return nil, fmt.Errorf("milter: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves ln until Close; it returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(&limitListener{Listener: ln, slots: s.slots, log: s.log, max: s.cfg.MaxConnections})
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// Close closes the listeners and every connection.
func (s *Server) Close() error {
	err := s.srv.Close()
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// limitListener closes connections over the limit at once.
type limitListener struct {
	net.Listener
	slots chan struct{}
	log   *slog.Logger
	max   int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: &guardConn{Conn: c}, slots: l.slots}, nil
		default:
			l.log.Warn("milter connection refused: max_connections reached", "remote", c.RemoteAddr().String(), "max_connections", l.max)
			c.Close()
		}
	}
}

type slotConn struct {
	net.Conn // a guardConn
	slots    chan struct{}
	once     sync.Once
}

func (c *slotConn) Close() error {
	c.once.Do(func() { <-c.slots })
	return c.Conn.Close()
}
