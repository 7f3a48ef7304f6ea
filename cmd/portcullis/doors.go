package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/internal/sockaddr"
	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policyd"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// doorAddrs are the TCP addresses of the Postfix doors (policyd, milter), bound before
// the privileges are dropped like every listener.
func doorAddrs(cfg *config.Config) []string {
	var out []string
	for _, a := range []string{cfg.Policyd.Addr, cfg.Milter.Addr} {
		if a == "" {
			continue
		}
		if network, address := sockaddr.Split(a); network == "tcp" {
			out = append(out, address)
		}
	}
	return out
}

// serveDoors starts the Postfix policy-delegation server and the milter server when
// they are configured; the returned function stops them.
func serveDoors(cfg *config.Config, priv *privileges, engine *policy.Engine, dlog *decisions, logger *slog.Logger) (func(), error) {
	policydRec, milterRec := dlog.doorRecorders()
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	serve := func(name, addr string, listen func(string, func(string, string) (net.Listener, error)) (net.Listener, error), srv interface {
		Serve(net.Listener) error
		Close() error
	}) error {
		ln, err := listen(addr, priv.listen)
		if err != nil {
			return err
		}
		closers = append(closers, func() { srv.Close() })
		logger.Info("listening", "listener", name, "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				logger.Error("listener stopped", "listener", name, "err", err.Error())
			}
		}()
		return nil
	}
	if cfg.Policyd.Addr != "" {
		srv, err := policyd.New(cfg.Policyd, policyd.Deps{Engine: engine, Decisions: policydRec, Logger: logger})
		if err != nil {
			return stop, err
		}
		if err := serve("policyd", cfg.Policyd.Addr, policyd.Listen, srv); err != nil {
			return stop, err
		}
	}
	if cfg.Milter.Addr != "" {
		srv, err := milter.New(cfg.Milter, milter.Deps{Engine: engine, Decisions: milterRec, Logger: logger})
		if err != nil {
			return stop, err
		}
		if err := serve("milter", cfg.Milter.Addr, milter.Listen, srv); err != nil {
			return stop, err
		}
	}
	return stop, nil
}

// smtpMilters builds the clients of the milters chained behind portcullis's own SMTP
// server (smtp.milters).
func smtpMilters(cfg *config.Config, logger *slog.Logger) ([]smtpd.Milter, error) {
	var out []smtpd.Milter
	for _, m := range cfg.SMTP.Milters {
		c, err := milter.NewClient(milter.ClientConfig{Addr: m.Addr, DefaultAction: m.DefaultAction,
			ConnectTimeout: m.ConnectTimeout, Timeout: m.Timeout, MaxMessageSize: int64(cfg.SMTP.MaxMessageSize),
			Hostname: cfg.Hostname, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		out = append(out, func(ctx context.Context, tx *policy.Transaction) (smtpd.MilterSession, policy.Decision) {
			return c.Open(ctx, tx)
		})
	}
	return out, nil
}
