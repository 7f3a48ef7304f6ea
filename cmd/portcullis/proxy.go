package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/proxylisten"
	"github.com/portcullis-mail/portcullis/proxy"
)

// serveProxy starts the IMAP, POP3, ManageSieve and LMTP proxy when the proxy section has an address: the
// directory of the directory section (local, PostgreSQL or LDAP) says where each user
// lives, auth (throttling and credential cache included) checks passwords: against the
// directory's hashes when it is PostgreSQL.
// The returned function stops it.
func serveProxy(ctx context.Context, cfg *config.Config, priv *privileges, users *auth.Service, router *route.Router, local proxy.Local, logger *slog.Logger) (func(), error) {
	pc := cfg.Proxy
	if pc.IMAPAddr == "" && pc.IMAPSAddr == "" && pc.POP3Addr == "" && pc.POP3SAddr == "" && pc.ManageSieveAddr == "" && pc.LMTPAddr == "" {
		return func() {}, nil
	}
	dir, closeDir, err := directory.Open(ctx, cfg.Directory, directory.Deps{
		Users: users.DB, LDAP: users.LDAP, Quota: int64(cfg.Store.Quota), Aliases: router.Addresses,
	})
	if err != nil {
		return nil, err
	}
	tlsCfg, err := priv.tlsConfig(cfg.SMTP)
	if err != nil {
		closeDir.Close()
		return nil, err
	}
	xc := pc.Config
	xc.Hostname, xc.TLSConfig = cfg.Hostname, tlsCfg
	xc.RecipientDelimiter = cfg.Routing.RecipientDelimiter
	xc.SpoolDir = cfg.DataDir
	// With the directory in PostgreSQL the passwords are its hashes (auth's hashing limits
	// and verify cache, throttled); otherwise auth's service, whose LDAP binds or local
	// users are the directory's own.
	var authn proxy.Authenticator = users.Auth
	if cfg.Directory.Postgres != "" {
		th, err := auth.NewThrottle(users.DB.WithHashes(directory.Hashes(dir)), cfg.Auth.Throttle)
		if err != nil {
			closeDir.Close()
			return nil, err
		}
		authn = th
	}
	px, err := proxy.New(xc, proxy.Deps{Auth: authn, Directory: dir, Logger: logger, Local: local})
	if err != nil {
		closeDir.Close()
		return nil, err
	}
	var lns []net.Listener
	stop := func() {
		for _, ln := range lns { // those whose Serve has not started yet too
			ln.Close()
		}
		px.Close()
		closeDir.Close()
	}
	for _, l := range []struct {
		name, addr  string
		implicitTLS bool
		serve       func(net.Listener, bool) error
	}{
		{"proxy-imap", pc.IMAPAddr, false, px.ServeIMAP},
		{"proxy-imaps", pc.IMAPSAddr, true, px.ServeIMAP},
		{"proxy-pop3", pc.POP3Addr, false, px.ServePOP3},
		{"proxy-pop3s", pc.POP3SAddr, true, px.ServePOP3},
		{"proxy-managesieve", pc.ManageSieveAddr, false, func(ln net.Listener, _ bool) error { return px.ServeManageSieve(ln) }},
		{"proxy-lmtp", pc.LMTPAddr, false, func(ln net.Listener, _ bool) error { return px.ServeLMTP(ln) }},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := priv.listen("tcp", l.addr)
		if err != nil {
			stop()
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
		lns = append(lns, ln)
		logger.Info("listening", "listener", l.name, "addr", ln.Addr().String())
		go func() {
			if err := l.serve(ln, l.implicitTLS); err != nil && !errors.Is(err, net.ErrClosed) {
				logger.Error("listener stopped", "listener", l.name, "err", err.Error())
			}
		}()
	}
	return stop, nil
}

// proxyLocal returns the in-memory listeners through which proxy_maybe hands this
// node's own users to its IMAP, POP3 and ManageSieve servers; none without proxy_maybe
// or without a proxy listener of the protocol.
func proxyLocal(cfg *config.Config) proxy.Local {
	pc := cfg.Proxy
	var l proxy.Local
	if !pc.ProxyMaybe {
		return l
	}
	if pc.IMAPAddr != "" || pc.IMAPSAddr != "" {
		l.IMAP = proxy.NewPipeListener()
	}
	if pc.POP3Addr != "" || pc.POP3SAddr != "" {
		l.POP3 = proxy.NewPipeListener()
	}
	if pc.ManageSieveAddr != "" {
		l.ManageSieve = proxy.NewPipeListener()
	}
	return l
}

// serveLocal serves srv on pl (when proxy_maybe made one) behind the PROXY protocol,
// which every connection through it carries: the proxy's, naming the client.
func serveLocal(pl *proxy.PipeListener, serve func(net.Listener) error, logger *slog.Logger) {
	if pl == nil {
		return
	}
	ln, err := proxylisten.Wrap(pl, nil)
	if err != nil { // cannot happen without a list to parse
		logger.Error("proxy_maybe listener", "err", err)
		return
	}
	go func() {
		if err := serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			logger.Error("listener stopped", "listener", "proxy-local", "err", err.Error())
		}
	}()
}
