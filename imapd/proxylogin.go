package imapd

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/emersion/go-imap/v2"

	"github.com/portcullis-mail/portcullis/internal/proxylisten"
)

// ProxyAuthenticator is an Authenticator that also takes a proxy's login on behalf of a
// user it has authenticated itself: SASL PLAIN with the user as authorization identity
// and the proxy's master credential (RFC 4616 §2, Dovecot's master users). imapd asks it
// only for a connection that came through a trusted proxy (a PROXY header from
// imap.proxy_from, or from a back-end in imap.move_from).
type ProxyAuthenticator interface {
	AuthenticateAs(ctx context.Context, user, master, password string, remote netip.Addr) (string, error)
}

// clientTLS says whether the client's connection is TLS: its own, or its link to the
// trusted proxy in front of this server (proxylisten.ClientTLS).
func (c *wireConn) clientTLS() bool {
	return proxylisten.ClientTLS(c.NetConn())
}

// loginAs serves AUTHENTICATE PLAIN with an authorization identity other than the
// authentication one: a proxy's master login, or a refusal.
func (s *session) loginAs(identity, username, password string) error {
	pa, ok := s.srv.auth.(ProxyAuthenticator)
	if !ok || !proxylisten.FromProxy(s.conn.NetConn()) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
			Text: "SASL identity not supported"}
	}
	return s.login(identity, func(ctx context.Context) (string, error) {
		name, err := pa.AuthenticateAs(ctx, identity, username, password, s.remote())
		if err == nil && name == "" {
			err = errors.New("no user")
		}
		return name, err
	})
}

// NetConn is the accepted connection beneath the accounting, for proxylisten to find
// its PROXY header.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }
