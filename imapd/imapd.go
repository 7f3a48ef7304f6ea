// Package imapd is the IMAP server over the mail store, with its own protocol layer
// (imapd/internal/wire reads the commands, wireconn.go answers them; go-imap/v2 is used
// for its types only). It speaks IMAP4rev1 and IMAP4rev2
// with IDLE, UIDPLUS, MOVE, SPECIAL-USE, NAMESPACE, LITERAL+, ENABLE, UNSELECT, STATUS,
// ESEARCH and SEARCHRES, ID, CONDSTORE and QRESYNC, MULTIAPPEND, SORT (and SORT=DISPLAY),
// ESORT, THREAD, QUOTA, COMPRESS=DEFLATE, BINARY, WITHIN, CATENATE,
// APPEND with flags and date, and SEARCH including body text.
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
//
// FETCH copies sections from the message file by the offsets of its MIME structure,
// parsed once and cached (msgtree.go), so no session holds a message in memory; what FETCH
// and SEARCH hold is bounded for the whole server. Each listener has its own connection
// pool, with limits per address, on connections not logged in (the oldest makes room), on
// the time and commands before the login, and per user (conn.go).
package imapd

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
	"sync/atomic"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/internal/ratelog"
	"github.com/portcullis-mail/portcullis/store"
)

// Config configures a Server.
type Config struct {
	// TLSConfig enables STARTTLS; not read from YAML.
	TLSConfig *tls.Config `yaml:"-"`
	// Trusted allows LOGIN and AUTHENTICATE without TLS (loopback or internal listeners).
	Trusted bool `yaml:"trusted"`
	// MaxFetchSize bounds how much of one message SEARCH reads into memory (a larger
	// message does not match TEXT or BODY); default the store's max_message_size (64MiB).
	// FETCH does not read messages into memory: sections are copied from the file.
	MaxFetchSize bytesize.Size `yaml:"max_fetch_size"`
	// FetchMemory bounds the bytes of messages all sessions together hold in memory at
	// once to answer FETCH and SEARCH (copy buffers, MIME structures being parsed, the
	// text SEARCH decodes); a command waits up to 30 s for room, then gets NO
	// [UNAVAILABLE]. Default 128MiB.
	FetchMemory bytesize.Size `yaml:"fetch_memory"`
	// MaxFetchParseSize bounds what one FETCH parses, decodes or skips through (MIME
	// structures, header field filters, BINARY decoding); beyond it the command ends with
	// NO [LIMIT]. Structures are cached, so a client that retries makes progress. Default
	// 1GiB (a second or two of CPU).
	MaxFetchParseSize bytesize.Size `yaml:"max_fetch_parse_size"`
	// MaxConnections bounds the connections of each listener; default 1000 (Dovecot's
	// imap process_limit is 1024). -1: no limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds one client address's connections to a listener; default
	// 50 (an office behind one NAT address; Postfix's smtpd_client_connection_count_limit
	// is 50 too). -1: no limit.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxLoginConnections bounds a listener's connections that have not logged in yet;
	// when it is full one is closed to make room, as Dovecot does (its imap-login
	// process_limit is 100): the one that waited longest of the address with the most
	// connections waiting, so that a flood from a few addresses closes its own. Default
	// 100; -1: no limit.
	MaxLoginConnections int `yaml:"max_login_connections"`
	// LoginTimeout closes a connection that has not logged in this long after connecting;
	// default 1 minute (Dovecot: 3 minutes). -1: none.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// IPv6Prefix groups IPv6 clients by network for max_connections_per_ip and for the
	// choice of the connection closed to make room for a login (default 64: one host
	// usually owns a whole /64, as SMTP and the auth throttle count it); IPv4 clients
	// count by their address.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// MaxLoginCommands closes a connection that sends more commands than this before it
	// logs in (NOOP, CAPABILITY, failed LOGINs, errors); default 20. -1: no limit.
	MaxLoginCommands int `yaml:"max_login_commands"`
	// MaxUserConnections bounds the sessions one user has logged in at once, from
	// anywhere; default 50. -1: no limit.
	MaxUserConnections int `yaml:"max_user_connections"`
	// MaxUserIPConnections bounds one user's sessions from one address (Dovecot's
	// mail_max_userip_connections, whose default is also 10); the next LOGIN gets
	// NO [UNAVAILABLE]. -1: no limit.
	MaxUserIPConnections int `yaml:"max_user_ip_connections"`
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
	rlog  *ratelog.Logger // what clients can cause, rate-limited
	train chan struct{}   // bounds concurrent Train calls
	cache *msgCache       // decoded search text, envelopes, MIME structures; nil when off
	mem   *memBudget
	users userLimits
	// sessions are the logged-in sessions, for Evict (evict.go).
	sessions loggedin.Registry[*session] // evict.go
	// searchRead counts the bytes SEARCH has read of message files (for tests).
	searchRead atomic.Int64
	recent     recentFloors // \Recent, see recent.go

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	wconns map[*wireConn]struct{} // closed by Close
	closed bool
}

// New returns a server over st that authenticates with a. No I/O.
func New(cfg Config, st *store.Store, a Authenticator, log *slog.Logger) (*Server, error) {
	if st == nil || a == nil {
		return nil, errors.New("imapd: store and authenticator are required")
	}
	if err := connlimit.CheckIPv6Prefix(cfg.IPv6Prefix); err != nil {
		return nil, fmt.Errorf("imapd: %w", err)
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = connlimit.DefaultIPv6Prefix
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
	if cfg.FetchMemory <= 0 {
		cfg.FetchMemory = 128 << 20
	}
	if cfg.MaxFetchParseSize <= 0 {
		cfg.MaxFetchParseSize = 1 << 30
	}
	defaultInt(&cfg.MaxConnections, 1000)
	defaultInt(&cfg.MaxConnectionsPerIP, 50)
	defaultInt(&cfg.MaxLoginConnections, 100)
	defaultInt(&cfg.MaxLoginCommands, 20)
	defaultInt(&cfg.MaxUserConnections, 50)
	defaultInt(&cfg.MaxUserIPConnections, 10)
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = time.Minute
	}
	log = log.With("server", "imap")
	s := &Server{cfg: cfg, store: st, auth: a, log: log, rlog: ratelog.New(log), train: make(chan struct{}, 4),
		mem: newMemBudget(int64(cfg.FetchMemory)), lns: map[net.Listener]struct{}{}, wconns: map[*wireConn]struct{}{},
		users: userLimits{user: map[string]int{}, userIP: map[userKey]int{}}}
	if cfg.CacheSize > 0 {
		s.cache = newMsgCache(int64(cfg.CacheSize))
	}
	return s, nil
}

// defaultInt sets *n to def when it is 0; a negative value means no limit.
func defaultInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

// Close stops the listeners and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.wconns {
		c.NetConn().Close()
	}
	return nil
}
