package pop3d

import (
	"crypto/tls"
	"log/slog"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/store"
)

type env struct {
	store *store.Store
	srv   *Server
	addr  string
	tls   *tls.Config
	cert  string
}

// start runs a server over a new store on loopback, with mailboxtest.Users and, unless
// cfg has one, the TLS config of a new self-signed certificate.
func start(t testing.TB, cfg Config) *env {
	t.Helper()
	st := mailboxtest.Store(t, store.Config{})
	tc, cp := mailboxtest.Cert(t)
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = tc
	}
	srv, err := New(cfg, st, mailboxtest.Users, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: st, srv: srv, addr: mailboxtest.Serve(t, srv), tls: tc, cert: cp}
}

func (e *env) deliver(t testing.TB, user, msg string) uint32 {
	t.Helper()
	return mailboxtest.Deliver(t, e.store, user, msg)
}
