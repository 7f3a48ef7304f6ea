package main

import (
	"context"
	"log/slog"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/local"
	"github.com/portcullis-mail/portcullis/delivery/mailhost"
	"github.com/portcullis-mail/portcullis/directory"
)

// frontend is what mode: frontend puts in place of the store: the shared directory
// (recipients checked at RCPT, passwords of submission), and the final delivery by LMTP
// to each user's back-end.
type frontend struct {
	*mailhost.Deliverer
	// auth checks submission passwords: against the directory's hashes when it is
	// PostgreSQL, else auth's service (whose LDAP binds are the directory's own).
	auth  auth.Authenticator
	lmtp  *lmtp.Client
	close func()
}

// openFrontend returns the front-end's delivery, or nil when the mode is not frontend.
func openFrontend(ctx context.Context, cfg *config.Config, users *auth.Service, logger *slog.Logger) (*frontend, error) {
	if cfg.Mode != config.ModeFrontend {
		return nil, nil
	}
	dir, closeDir, err := directory.Open(ctx, cfg.Directory, directory.Deps{LDAP: users.LDAP})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*frontend, error) {
		closeDir.Close()
		return nil, err
	}
	fe := &frontend{auth: users.Auth}
	if cfg.Directory.Postgres != "" {
		th, err := auth.NewThrottle(users.DB.WithHashes(directory.Hashes(dir)), cfg.Auth.Throttle)
		if err != nil {
			return fail(err)
		}
		fe.auth = th
	}
	if fe.lmtp, err = lmtp.New(cfg.LMTP); err != nil {
		return fail(err)
	}
	fe.Deliverer, err = mailhost.New(mailhost.Config{Hosts: cfg.Directory, RecipientDelimiter: cfg.Routing.RecipientDelimiter},
		mailhost.Deps{Directory: dir, LMTP: fe.lmtp, Logger: logger})
	if err != nil {
		fe.lmtp.Close()
		return fail(err)
	}
	fe.close = func() {
		fe.lmtp.Close()
		closeDir.Close()
	}
	where := "postgres"
	if cfg.Directory.LDAP != nil {
		where = "ldap"
	}
	logger.Info("front-end: no local store; mail goes by LMTP to each user's mail host", "directory", where, "hosts", len(cfg.Directory.Hosts))
	return fe, nil
}

// submissionAuth is the SMTP AUTH of the process: the front-end's when there is one.
func submissionAuth(users *auth.Service, fe *frontend) auth.Authenticator {
	if fe != nil {
		return fe.auth
	}
	return users.Auth
}

// reloadSieve reloads the global Sieve scripts of the local delivery, which a front-end
// does not have.
func reloadSieve(l *local.Deliverer) error {
	if l == nil {
		return nil
	}
	return l.ReloadSieve()
}
