package pop3d

import (
	"context"
	"errors"
	"net/netip"

	"github.com/portcullis-mail/portcullis/internal/proxylisten"
)

// ProxyAuthenticator is an Authenticator that also takes a proxy's login on behalf of a
// user it has authenticated itself: SASL PLAIN with the user as authorization identity
// and the proxy's master credential (RFC 4616 §2, Dovecot's master users). It is asked
// only for a connection that came through a trusted proxy (a PROXY header from
// pop3.proxy_from, or from a back-end in pop3.move_from).
type ProxyAuthenticator interface {
	AuthenticateAs(ctx context.Context, user, master, password string, remote netip.Addr) (string, error)
}

var errIdentity = errors.New("authorization identity must match")

// authenticateAs serves AUTH PLAIN with an authorization identity other than the
// authentication one: a proxy's master login, or a refusal.
func (s *session) authenticateAs(identity, username, password string) (string, error) {
	pa, ok := s.srv.auth.(ProxyAuthenticator)
	if !ok || !proxylisten.FromProxy(s.conn) {
		return "", errIdentity
	}
	name, err := pa.AuthenticateAs(s.ctx, identity, username, password, s.remote)
	if err == nil && name == "" {
		err = errIdentity
	}
	return name, err
}
