package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/proxy"
)

// serveProxyMode is mode: proxy: the IMAP, POP3, ManageSieve and LMTP proxy of the proxy section (proxy.go)
// and nothing else: no SMTP, queue or store. It returns when ctx ends.
func serveProxyMode(ctx context.Context, cfg *config.Config, priv *privileges, logger *slog.Logger) error {
	pc := cfg.Proxy
	if pc.IMAPAddr == "" && pc.IMAPSAddr == "" && pc.POP3Addr == "" && pc.POP3SAddr == "" && pc.ManageSieveAddr == "" && pc.LMTPAddr == "" {
		return errors.New("mode proxy: no proxy listener; set proxy.imap_addr, imaps_addr, pop3_addr, pop3s_addr, managesieve_addr or lmtp_addr")
	}
	users, err := auth.Open(cfg.Auth, cfg.DataDir, logger, nil)
	if err != nil {
		return err
	}
	defer users.Close()
	rcfg := cfg.Routing
	rcfg.Logger, rcfg.LocalUserExists = logger, users.Exists
	router, err := route.New(rcfg) // the aliases of the local directory
	if err != nil {
		return err
	}
	stop, err := serveProxy(ctx, cfg, priv, users, router, proxy.Local{}, logger) // no proxy_maybe: no store here
	if err != nil {
		return err
	}
	defer stop()
	<-ctx.Done()
	logger.Info("stopped")
	return nil
}
