// Package auth authenticates users for SMTP AUTH, IMAP and POP3: one Authenticator shared by
// every listener, backed by local users in the embedded database or by LDAP.
package auth

import (
	"context"
	"errors"
	"net/netip"
)

// Authenticator checks a user name and password. It returns the canonical user name (the
// mailbox address) on success.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error)
}

// Errors an Authenticator returns; match them with errors.Is. Servers answer ErrInvalid
// with 535 5.7.8 (SMTP) / NO [AUTHENTICATIONFAILED] (IMAP), ErrThrottled and
// ErrUnavailable with a temporary failure.
var (
	ErrInvalid     = errors.New("auth: invalid credentials")
	ErrThrottled   = errors.New("auth: too many failures, try again later")
	ErrUnavailable = errors.New("auth: authentication backend unavailable")
)
