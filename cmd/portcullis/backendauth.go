package main

import (
	"context"
	"log/slog"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/proxy"
)

// mailboxAuth is the authenticator of the IMAP, POP3 and ManageSieve servers: auth's
// service; with directory.postgres, the shared directory's password hashes (a back-end
// of the multi-node mode reads the directory its proxy reads, throttled and cached as
// auth's own); with proxy.master_user, also the proxy's master login, which the servers
// take only on connections from their proxy_from addresses. The returned function
// closes the directory.
func mailboxAuth(ctx context.Context, cfg *config.Config, users *auth.Service, router *route.Router, logger *slog.Logger) (auth.Authenticator, func(), error) {
	if cfg.Directory.Postgres == "" && cfg.Proxy.MasterUser == "" {
		return users.Auth, func() {}, nil
	}
	dir, closeDir, err := directory.Open(ctx, cfg.Directory, directory.Deps{
		Users: users.DB, LDAP: users.LDAP, Quota: int64(cfg.Store.Quota), Aliases: router.Addresses,
	})
	if err != nil {
		return nil, nil, err
	}
	stop := func() { closeDir.Close() }
	var authn auth.Authenticator = users.Auth
	if cfg.Directory.Postgres != "" {
		th, err := auth.NewThrottle(users.DB.WithHashes(directory.Hashes(dir)), cfg.Auth.Throttle)
		if err != nil {
			stop()
			return nil, nil, err
		}
		authn = th
	}
	if cfg.Proxy.MasterUser != "" {
		ma, err := proxy.NewMasterAuth(authn, dir, cfg.Proxy.MasterUser, cfg.Proxy.MasterSecretFile)
		if err != nil {
			stop()
			return nil, nil, err
		}
		authn = ma
		logger.Info("mailbox servers take the proxy's master login", "master_user", cfg.Proxy.MasterUser)
	}
	return authn, stop, nil
}
