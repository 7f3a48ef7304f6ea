package pop3d

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/store"
)

// staticAuth is a test Authenticator with fixed passwords (the real one lives in auth/).
type staticAuth map[string]string

func (a staticAuth) Authenticate(_ context.Context, user, pass string, _ netip.Addr) (string, error) {
	if p, ok := a[user]; ok && p == pass {
		return user, nil
	}
	return "", auth.ErrInvalid
}

// testCert makes the server's own self-signed certificate (localhost, 127.0.0.1) in a
// temp dir and returns the TLS config and the PEM paths (for clients that verify it).
func testCert(t *testing.T) (*tls.Config, string, string) {
	t.Helper()
	dir := t.TempDir()
	cert, err := smtpd.SelfSignedCertificate(dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		filepath.Join(dir, "tls", "selfsigned.crt"), filepath.Join(dir, "tls", "selfsigned.key")
}

type env struct {
	store *store.Store
	srv   *Server
	addr  string
	tls   *tls.Config
	cert  string
}

func start(t *testing.T, cfg Config) *env {
	t.Helper()
	st, err := store.New(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tc, cp, _ := testCert(t)
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = tc
	}
	srv, err := New(cfg, st, staticAuth{"alice@example.org": "secret pw", "bob@example.org": "pw2"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &env{store: st, srv: srv, addr: ln.Addr().String(), tls: tc, cert: cp}
}

func (e *env) deliver(t *testing.T, user, msg string) uint32 {
	t.Helper()
	uid, err := e.store.Deliver(context.Background(), user, "", stringsReader(msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}
