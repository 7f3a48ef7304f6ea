package main

// Process-level limits of `portcullis serve`: the file descriptor budget shared by every
// listener, and the /metrics HTTP server's own bounds.

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/portcullis-mail/portcullis/config"
)

// Descriptors each SMTP connection may hold: its socket and the temporary file of a large
// message being received.
const fdsPerSMTPConn = 2

// Descriptors each IMAP or POP3 session may hold: its socket and the message file a FETCH,
// RETR or TOP is streaming (the user's index stays open once per user, in the reserve).
const fdsPerMailboxConn = 2

// Pool sizes of the IMAP and POP3 listeners when max_connections is not set (see
// imapd.Config and pop3d.Config).
const (
	defaultIMAPConns = 1000
	defaultPOP3Conns = 500
	// defaultManageSieveConns is managesieve.Config.MaxConnections's default.
	defaultManageSieveConns = 200
)

// fdReserve is what the process keeps for everything that is not a client connection:
// the queue (log segments, message and status files), the user and Bayes databases,
// DNS and clamd sockets, logs. Each delivery adds a few (see descriptorBudget).
const fdReserve = 256

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit (the Go runtime does so
// on Linux already; this makes it explicit and portable) and returns the limit in force.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("setrlimit(RLIMIT_NOFILE, %d): %w", lim.Max, err)
		}
	}
	return uint64(lim.Cur), nil
}

// descriptorBudget returns the descriptors the configured pools can take at once: every
// SMTP listener full (each connection with its spill file), the HTTP server full, the
// deliveries, and the reserve.
func descriptorBudget(cfg *config.Config) (need uint64, detail string) {
	smtp := cfg.SMTP.Defaults()
	var conns uint64
	for _, l := range smtp.Listeners {
		conns += uint64(l.MaxConnections)
	}
	conns = min(conns, uint64(smtp.MaxConnections))
	deliveries := uint64(cfg.Delivery.Concurrency)
	if deliveries == 0 {
		deliveries = 20 // delivery's default
	}
	var web uint64
	if cfg.HTTP.Addr != "" {
		web = httpMaxConns
	}
	mailbox := listenerPool(cfg.IMAP.MaxConnections, defaultIMAPConns, cfg.IMAP.Addr, cfg.IMAP.TLSAddr) +
		listenerPool(cfg.POP3.MaxConnections, defaultPOP3Conns, cfg.POP3.Addr, cfg.POP3.TLSAddr) +
		listenerPool(cfg.ManageSieve.MaxConnections, defaultManageSieveConns, cfg.ManageSieve.Addr, "")
	need = conns*fdsPerSMTPConn + mailbox*fdsPerMailboxConn + web + 4*deliveries + fdReserve
	detail = fmt.Sprintf("%d SMTP connections (the listeners' max_connections) x %d, %d IMAP, POP3 and ManageSieve connections x %d, %d HTTP, %d deliveries x 4, %d reserve",
		conns, fdsPerSMTPConn, mailbox, fdsPerMailboxConn, web, deliveries, fdReserve)
	return need, detail
}

// listenerPool is the connections the listeners at addrs may hold together: max per
// listener (def when 0; a negative max, no limit, counts nothing: it cannot be budgeted).
func listenerPool(max, def int, addrs ...string) uint64 {
	if max == 0 {
		max = def
	}
	var n uint64
	for _, a := range addrs {
		if a != "" && max > 0 {
			n += uint64(max)
		}
	}
	return n
}

// checkDescriptors raises the descriptor limit and refuses to start when the listeners'
// pools do not fit under it: a pool that cannot be filled is no bound, and whichever
// protocol is flooded first would take the descriptors of the others (2,000 idle IMAP
// connections once stopped SMTP accepts and deliveries).
func checkDescriptors(cfg *config.Config, log *slog.Logger) error {
	limit, err := raiseFileLimit()
	if err != nil {
		return err
	}
	need, detail := descriptorBudget(cfg)
	if need > limit {
		return fmt.Errorf("the connection limits need up to %d file descriptors (%s) but RLIMIT_NOFILE is %d: "+
			"lower smtp.listeners[].max_connections (or smtp.max_connections), imap.max_connections or pop3.max_connections, or raise the limit (LimitNOFILE= in the systemd unit, ulimit -n)",
			need, detail, limit)
	}
	log.Info("file descriptors", "limit", limit, "pools_need", need)
	return nil
}

// The /metrics server's bounds: it is for a scraper, not for the public, so a handful of
// connections, short timeouts and small headers. The write timeout leaves room for
// /debug/pprof/profile, which writes after sampling for 30 seconds by default.
const (
	httpMaxConns          = 32
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 60 * time.Second
	httpIdleTimeout       = 60 * time.Second
	httpMaxHeaderBytes    = 16 << 10
)

// newHTTPServer returns the metrics server and its listener, bounded: at most
// httpMaxConns connections (more wait in the kernel's accept queue, holding no
// descriptor of ours), headers within httpReadHeaderTimeout and httpMaxHeaderBytes, a
// whole request within httpReadTimeout, idle keep-alive connections closed after
// httpIdleTimeout.
func newHTTPServer(ln net.Listener, h http.Handler, log *slog.Logger) (*http.Server, net.Listener) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return srv, netutil.LimitListener(ln, httpMaxConns)
}
