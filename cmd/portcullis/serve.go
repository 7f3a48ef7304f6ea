package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/dispatch"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/local"
	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/imapd"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/pop3d"
	"github.com/portcullis-mail/portcullis/proxy"
	"github.com/portcullis-mail/portcullis/ratelimit"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

func serveCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the mail server (SMTP on 127.0.0.1:2525, submission on :5870 and :5465 by default)",
		Long: `Run the mail server. Without --config it runs on embedded defaults: data under ./data
(or --data), MX on 127.0.0.1:2525, submission with STARTTLS on 127.0.0.1:5870 and with
implicit TLS on 127.0.0.1:5465, metrics on http://127.0.0.1:8025/metrics, the local domain
example.test, and the default rule file written to DATA/rules.yaml on first start.

Signals: SIGHUP reloads the rule file (a bad file keeps the old rules and logs why);
SIGTERM and SIGINT shut down gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(g.config, g.data)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, cfg, cmd.ErrOrStderr())
		},
	}
}

func newLogger(cfg *config.Config, w *os.File) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: want debug, info, warn or error", cfg.Log.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.Log.Format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: want text or json", cfg.Log.Format)
}

// newResolver builds the shared, cached resolver of every DNS policy.
func newResolver(cfg *config.Config) (dnsx.Resolver, error) {
	c, err := dnsx.NewClient(cfg.DNS)
	if err != nil {
		return nil, err
	}
	return dnsx.NewCache(c, cfg.Cache)
}

// ensureRules writes the default rule file on first start when the config names none.
func ensureRules(cfg *config.Config) error {
	if _, err := os.Stat(cfg.Rules); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if cfg.Rules != filepath.Join(cfg.DataDir, "rules.yaml") {
		return fmt.Errorf("rule file %s does not exist", cfg.Rules)
	}
	return os.WriteFile(cfg.Rules, config.DefaultRules(), 0o600)
}

func serve(ctx context.Context, cfg *config.Config, stderr io.Writer) error {
	logger, err := newLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	slog.SetDefault(logger)
	if os.Getenv("GOGC") == "" {
		// The server's live heap is small and its garbage is per message: collecting at
		// 200% growth instead of 100% took about 10% less user CPU per message in
		// bench/smtp.sh for a few MiB more memory. GOGC in the environment overrides.
		debug.SetGCPercent(200)
	}
	if err := checkDescriptors(cfg, logger); err != nil {
		return err
	}
	if limit := setMemoryLimit(cfg.MemoryLimit); limit > 0 {
		logger.Info("memory limit", "bytes", limit, "limit", bytesize.Size(limit).String())
	}
	// Whatever the server creates is its own alone (0600, 0700), SQLite files included.
	syscall.Umask(0o077)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// As root: bind, read the certificate, become cfg.User (privileges.go). Nothing else
	// is opened before.
	priv, err := dropPrivileges(cfg, logger)
	if err != nil {
		return err
	}
	defer priv.close()
	if cfg.Mode == config.ModeProxy {
		return serveProxyMode(ctx, cfg, priv, logger) // mode.go
	}
	if err := ensureRules(cfg); err != nil {
		return err
	}
	resolver, err := newResolver(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	deps := config.Deps{Resolver: resolver, DataDir: cfg.DataDir, Hostname: cfg.Hostname, LocalDomains: cfg.LocalDomains, AuthservID: cfg.AuthservID, Logger: logger,
		BayesPostgres: cfg.Bayes.Postgres, BayesRefresh: cfg.Bayes.Refresh, BayesStores: bayesStores}
	rf, err := config.LoadRules(cfg.Rules, deps)
	if err != nil {
		return fmt.Errorf("rules:\n%w", err)
	}
	lists, listed, err := openSenderLists(cfg)
	if err != nil {
		return err
	}
	defer lists.Close()
	engine, err := policy.NewEngine(policy.EngineConfig{
		Rules: rf.Rules, Policies: rf.Policies, LocalDomains: cfg.LocalDomains, Hostname: cfg.Hostname,
		Logger: logger, Metrics: policy.NewMetrics(reg), SenderLists: listed,
	})
	if err != nil {
		return fmt.Errorf("rules:\n%w", err)
	}
	defer engine.Close()
	sp, err := spool.Open(filepath.Join(cfg.DataDir, "queue"), spool.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer sp.Close()

	users, err := openUsers(ctx, cfg, stderr, logger, reg)
	if err != nil {
		return err
	}
	defer users.DB.Close()

	// Delivery: the router expands aliases and picks each recipient's transport; local
	// users get maildirs under DATA/mail, lmtp: and smtp: transports their clients.
	exists := users.Exists
	fe, err := openFrontend(ctx, cfg, users, logger) // frontend.go: nil unless mode: frontend
	if err != nil {
		return err
	}
	if fe != nil {
		defer fe.close()
		exists = fe.Exists
	}
	exists, closeBackend, err := backendExists(ctx, cfg, users, exists) // backend.go: mode backend
	if err != nil {
		return err
	}
	defer closeBackend()
	rcfg := cfg.Routing
	rcfg.Logger = logger
	rcfg.LocalUserExists = exists
	router, err := route.New(rcfg)
	if err != nil {
		return err
	}
	listed.router = router
	// Local users get their mail through the store (maildir plus index), so IMAP sees it
	// at once and quotas apply; the LMTP listener delivers the same way.
	// A front-end has no store: its final delivery is fe's, by LMTP to the back-ends.
	var mailStore *store.Store
	var localDeliverer *local.Deliverer
	var final dispatch.LocalDeliverer
	var lmtpLocal smtpd.LocalDeliverer
	var quota func(context.Context, string, int64) error
	if fe == nil {
		if mailStore, err = store.New(cfg.Store); err != nil {
			return err
		}
		defer mailStore.Close()
		localDeliverer, err = local.New(local.Config{Store: mailStore, Exists: exists,
			RecipientDelimiter: cfg.Routing.RecipientDelimiter,
			Sieve:              cfg.Sieve, Enqueue: sp.Enqueue, Hostname: cfg.Hostname, Logger: logger}) // sieve.go
		if err != nil {
			return err
		}
		final, lmtpLocal, quota = localDeliverer, localDeliverer, localDeliverer.CheckQuota
	} else {
		final = fe
	}
	lmtpClient, err := lmtp.New(cfg.LMTP)
	if err != nil {
		return err
	}
	defer lmtpClient.Close()
	relayCfg := cfg.Relay
	relayCfg.Resolver = resolver
	relayClient, err := relay.New(relayCfg)
	if err != nil {
		return err
	}
	defer relayClient.Close()
	dispatcher, err := dispatch.New(dispatch.Config{Router: router, Local: final, LMTP: lmtpClient, Relay: relayClient, Reinject: sp.Enqueue})
	if err != nil {
		return err
	}
	dlog, closeDecisions, err := openDecisions(ctx, cfg, logger, reg) // decisions.go
	if err != nil {
		return err
	}
	defer closeDecisions() // after the queue manager and the SMTP server stopped
	dcfg := cfg.Delivery
	dcfg.Logger, dcfg.Metrics, dcfg.Outcomes = logger, reg, dlog.outcomes()
	manager, err := delivery.New(dcfg, sp, dispatcher)
	if err != nil {
		return err
	}
	qctx, stopQueue := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() { qdone <- manager.Run(qctx) }()
	defer func() {
		stopQueue()
		<-qdone
	}()

	authservID := cfg.AuthservID
	signer, err := dkim.NewSigner(cfg.DKIM.Sign)
	if err != nil {
		return err
	}
	limiter, err := ratelimit.New(cfg.RateLimits, ratelimit.Deps{Hostname: cfg.Hostname, Logger: logger})
	if err != nil {
		return err
	}
	defer limiter.Close()
	milters, err := smtpMilters(cfg, logger)
	if err != nil {
		return err
	}
	srv, err := smtpd.New(cfg.SMTP, smtpd.Deps{
		Limiter:        limiter,
		Milters:        milters,
		Engine:         engine,
		Spool:          sp,
		Resolver:       resolver,
		Auth:           submissionAuth(users, fe), // frontend.go
		Recipients:     router,                    // users, aliases and virtual aliases: 550 5.1.1 at RCPT
		Senders:        router,                    // sender.owned: one's own addresses and aliases, the login map
		Local:          lmtpLocal,                 // final delivery of the LMTP listener
		Quota:          quota,
		Logger:         logger,
		Metrics:        reg,
		Decisions:      dlog.recorder(),
		PrepareMessage: prepareMessage(authservID, signer, logger),
		TLSConfig:      priv.tlsCfg, // nil: smtpd reads it
		Listen:         priv.listen,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	for _, l := range cfg.SMTP.Listeners {
		logger.Info("listening", "listener", l.Name, "addr", srv.Addr(l.Name).String(), "mode", l.Mode)
	}

	stopDoors, err := serveDoors(cfg, priv, engine, dlog, logger)
	if err != nil {
		return err
	}
	defer stopDoors()

	mailAuth, closeMailAuth, err := mailboxAuth(ctx, cfg, users, router, logger) // backendauth.go
	if err != nil {
		return err
	}
	defer closeMailAuth()
	local := proxyLocal(cfg) // proxy.go: proxy_maybe's in-memory listeners
	stopMailServers, err := serveMailboxes(cfg, priv, mailStore, mailAuth, local, logger)
	if err != nil {
		return err
	}
	defer stopMailServers()
	stopProxy, err := serveProxy(ctx, cfg, priv, users, router, local, logger) // proxy.go
	if err != nil {
		return err
	}
	defer stopProxy()

	var httpSrv *http.Server
	if cfg.HTTP.Addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", fromNetworks(cfg.HTTP.MetricsFrom, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
		if cfg.HTTP.Pprof {
			mux.Handle("/debug/pprof/", fromNetworks(cfg.HTTP.MetricsFrom, http.HandlerFunc(pprof.Index)))
			mux.Handle("/debug/pprof/profile", fromNetworks(cfg.HTTP.MetricsFrom, http.HandlerFunc(pprof.Profile)))
		}
		stopWeb, err := mountWeb(cfg, mux, sp, users, router, lists, listed, dlog.log, rf.Policies, logger)
		if err != nil {
			return err
		}
		defer stopWeb()
		ln, err := priv.listen("tcp", cfg.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("http: %w", err)
		}
		if ln, err = webTLS(cfg, priv, ln); err != nil {
			return err
		}
		httpSrv, ln = newHTTPServer(ln, mux, logger)
		go func() { _ = httpSrv.Serve(ln) }()
		logger.Info("listening", "listener", "http", "addr", ln.Addr().String())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := router.Reload(); err != nil {
				logger.Error("reloading the routing maps failed; the old maps stay in force", "err", err.Error())
			}
			// A front-end runs no Sieve: the back-ends do, at their LMTP delivery.
			if err := reloadSieve(localDeliverer); err != nil {
				logger.Error("reloading the global Sieve scripts failed; the old ones stay in force", "err", err.Error())
			}
			rf, err := config.LoadRules(cfg.Rules, deps)
			if err == nil {
				err = engine.Reload(rf.Rules, rf.Policies)
			}
			if err != nil {
				logger.Error("reload failed; the old rules stay in force", "file", cfg.Rules, "err", err.Error())
				continue
			}
			logger.Info("rules reloaded", "file", cfg.Rules, "rules", len(rf.Rules))
		}
	}()

	err = srv.Serve(ctx)
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	logger.Info("stopped")
	return err
}

// openUsers opens the user service (local users, optional LDAP, throttling, recipient
// validation) and creates the postmaster on first start, printing its password once.
func openUsers(ctx context.Context, cfg *config.Config, stderr io.Writer, logger *slog.Logger, reg prometheus.Registerer) (*auth.Service, error) {
	svc, err := auth.Open(cfg.Auth, cfg.DataDir, logger, reg)
	if err != nil {
		return nil, err
	}
	if cfg.Postmaster != "" {
		pw, created, err := svc.DB.EnsureUser(ctx, cfg.Postmaster)
		if err != nil {
			svc.DB.Close()
			return nil, fmt.Errorf("creating %s: %w", cfg.Postmaster, err)
		}
		if created {
			fmt.Fprintf(stderr, "\nCreated the user %s with the password\n\n    %s\n\nIt is shown only this once; change it with: portcullis user passwd %s\n\n", cfg.Postmaster, pw, cfg.Postmaster)
		}
	}
	return svc, nil
}

// prepareMessage runs on every received message before the data stage: it removes
// Authentication-Results fields that claim our name (only we may write them, RFC 8601
// §5) and DKIM-signs mail from authenticated users when a key exists for the From:
// domain (DATA/dkim, made by portcullis dkim keygen).
func prepareMessage(authservID string, signer *dkim.Signer, log *slog.Logger) func(context.Context, *policy.Transaction, []byte) ([]byte, error) {
	strip := smtpd.RewriteHeader(func(h *textproto.Header) bool {
		return dkim.StripForgedAuthResults(h, authservID) > 0
	})
	return func(ctx context.Context, tx *policy.Transaction, raw []byte) ([]byte, error) {
		raw, err := strip(ctx, tx, raw)
		if err != nil || tx.Conn.AuthUser == "" {
			return raw, err
		}
		signed, err := signer.SignMessage(raw)
		if err != nil {
			if !errors.Is(err, dkim.ErrNoKey) {
				log.Warn("dkim signing failed; sending unsigned", "id", tx.Conn.ID, "err", err.Error())
			}
			return raw, nil
		}
		return signed, nil
	}
}

// serveMailboxes starts the IMAP and POP3 listeners over the store; the returned function
// closes them.
func serveMailboxes(cfg *config.Config, priv *privileges, st *store.Store, authn auth.Authenticator, local proxy.Local, logger *slog.Logger) (func(), error) {
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	var tlsCfg *tls.Config
	if cfg.IMAP.Addr != "" || cfg.IMAP.TLSAddr != "" || cfg.POP3.Addr != "" || cfg.POP3.TLSAddr != "" || cfg.ManageSieve.Addr != "" || local != (proxy.Local{}) {
		var err error
		if tlsCfg, err = priv.tlsConfig(cfg.SMTP); err != nil {
			return stop, err
		}
	}
	listen := func(name, addr string, implicitTLS bool, serve func(net.Listener) error) error {
		if addr == "" {
			return nil
		}
		ln, err := priv.listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if ln, err = proxyListener(cfg, name, ln, logger); err != nil {
			return err
		}
		if implicitTLS {
			ln = tls.NewListener(ln, tlsCfg)
		}
		logger.Info("listening", "listener", name, "addr", ln.Addr().String())
		go func() {
			// A listener closed by the shutdown is not an error worth reporting.
			if err := serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				logger.Error("listener stopped", "listener", name, "err", err.Error())
			}
		}()
		return nil
	}
	// The servers whose sessions a move closes (backend.go).
	var tenants evicters
	if cfg.IMAP.Addr != "" || cfg.IMAP.TLSAddr != "" || local.IMAP != nil {
		icfg := cfg.IMAP.Config
		icfg.TLSConfig = tlsCfg
		if cfg.IMAP.TrainJunk == nil || *cfg.IMAP.TrainJunk {
			icfg.Train = junkTrainer(cfg, logger)
		}
		srv, err := imapd.New(icfg, st, authn, logger)
		if err != nil {
			return stop, err
		}
		closers = append(closers, func() { srv.Close() })
		tenants = append(tenants, srv)
		if err := listen("imap", cfg.IMAP.Addr, false, srv.Serve); err != nil {
			return stop, err
		}
		if err := listen("imaps", cfg.IMAP.TLSAddr, true, srv.Serve); err != nil {
			return stop, err
		}
		serveLocal(local.IMAP, srv.Serve, logger) // proxy.go
	}
	if cfg.POP3.Addr != "" || cfg.POP3.TLSAddr != "" || local.POP3 != nil {
		pcfg := cfg.POP3.Config
		pcfg.TLSConfig = tlsCfg
		srv, err := pop3d.New(pcfg, st, authn, logger)
		if err != nil {
			return stop, err
		}
		closers = append(closers, func() { srv.Close() })
		tenants = append(tenants, srv)
		if err := listen("pop3", cfg.POP3.Addr, false, srv.Serve); err != nil {
			return stop, err
		}
		if err := listen("pop3s", cfg.POP3.TLSAddr, true, srv.Serve); err != nil {
			return stop, err
		}
		serveLocal(local.POP3, srv.Serve, logger)
	}
	if cfg.ManageSieve.Addr != "" || local.ManageSieve != nil {
		srv, err := newManageSieve(cfg, tlsCfg, st, authn, logger) // sieve.go
		if err != nil {
			return stop, err
		}
		closers = append(closers, func() { srv.Close() })
		tenants = append(tenants, srv)
		if err := listen("managesieve", cfg.ManageSieve.Addr, false, srv.Serve); err != nil {
			return stop, err
		}
		serveLocal(local.ManageSieve, srv.Serve, logger)
	}
	if len(tenants) > 0 {
		stopWatch, err := watchTenancy(cfg, tenants, logger) // backend.go: mode backend
		if err != nil {
			return stop, err
		}
		closers = append(closers, stopWatch)
	}
	return stop, nil
}

// bayesStores is the process's one global Bayes store per database, shared by the
// bayes policy (config.Deps.BayesStores), the Junk trainer and the release trainer:
// each holds the whole token table in memory, and three copies of it were held before.
// Its back-off spares a PostgreSQL that is down a table load per Junk move.
var bayesStores = bayes.NewStores()

// junkTrainer trains the global Bayes database (DATA/bayes/global.db, or bayes.postgres)
// from users' moves into and out of Junk. The database is opened on first use, so a
// server without Bayes pays nothing, and shared with the policy (bayesStores).
func junkTrainer(cfg *config.Config, logger *slog.Logger) func(ctx context.Context, user string, msg io.Reader, spam bool) error {
	var mu sync.Mutex
	var cl *bayes.Classifier
	var refused error // the database's tokenizer is not ours
	var refusedAt time.Time
	open := func(ctx context.Context) (*bayes.Classifier, error) {
		// not a sync.Once: a PostgreSQL store down at the first move is tried again,
		// after bayesStores' back-off
		mu.Lock()
		defer mu.Unlock()
		if cl != nil {
			return cl, nil
		}
		if refused != nil && time.Since(refusedAt) < time.Minute {
			return nil, refused
		}
		path := bayes.DefaultDBPath(cfg.DataDir)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		// bayes.postgres: the site-wide database the front-ends classify with
		st, err := bayesStores.Open(ctx, path, cfg.Bayes.Postgres, cfg.Bayes.Refresh, logger)
		if err != nil {
			return nil, err
		}
		c, err := bayes.New(bayes.Config{}, st)
		if err == nil {
			// as the policy: a database trained by another tokenizer version (another
			// node of the shared database, during a rolling upgrade) is refused, not
			// mixed with counts that do not match
			err = c.CheckStore(ctx)
		}
		if err != nil {
			st.Close()
			refused, refusedAt = err, time.Now()
			return nil, err
		}
		cl = c
		return cl, nil
	}
	return func(ctx context.Context, user string, msg io.Reader, spam bool) error {
		cl, err := open(ctx)
		if err != nil {
			return err
		}
		raw, err := io.ReadAll(io.LimitReader(msg, 32<<20))
		if err != nil {
			return err
		}
		class := bayes.Ham
		if spam {
			class = bayes.Spam
		}
		_, err = cl.Train(ctx, raw, class)
		if err == nil {
			logger.Info("bayes trained from a Junk move", "user", user, "spam", spam)
		}
		return err
	}
}
