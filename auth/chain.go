package auth

import (
	"context"
	"errors"
	"net/netip"
)

// Chain returns an Authenticator that asks each backend in turn (e.g. the local user
// database, then LDAP), so that one authenticator serves SMTP AUTH, IMAP and POP3.
//
// The first success wins. A backend that does not know the user (ErrUnknownUser) or
// cannot be reached (ErrUnavailable) passes to the next; any other ErrInvalid — the
// backend knows the user and the password is wrong — ends the chain, so that a user
// defined in two backends cannot log in with the password of the other. When no
// backend knew the user and one was unavailable, the result is that ErrUnavailable (a
// temporary failure), not ErrInvalid.
func Chain(backends ...Authenticator) Authenticator { return chain(backends) }

type chain []Authenticator

func (c chain) Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error) {
	var unavailable, last error
	for _, a := range c {
		name, err := a.Authenticate(ctx, username, password, remote)
		switch {
		case err == nil:
			return name, nil
		case errors.Is(err, ErrUnknownUser):
			last = err
		case errors.Is(err, ErrInvalid), errors.Is(err, ErrThrottled):
			return "", err
		default:
			if ctx.Err() != nil {
				return "", err
			}
			if unavailable == nil {
				unavailable = err
			}
		}
	}
	if unavailable != nil {
		return "", unavailable
	}
	if last == nil {
		last = ErrUnknownUser
	}
	return "", last
}
