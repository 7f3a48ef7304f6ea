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

// MaxPasswordLen bounds the password an Authenticator accepts, and a password that can
// be set (in bytes); longer ones are refused before any hashing or bind, so they cannot
// be used to burn CPU. 256 bytes, as Dovecot and others cap: an imported SHA-crypt hash
// costs time in proportion to the password's length times its rounds (up to 1,000,000:
// 1.5 s for 8 bytes, 9.7 s for 1024 bytes on a test machine), and no one types more.
const MaxPasswordLen = 256

// Errors an Authenticator returns; match them with errors.Is. Servers answer ErrInvalid
// with 535 5.7.8 (SMTP) / NO [AUTHENTICATIONFAILED] (IMAP), and ErrThrottled and
// ErrUnavailable with a temporary failure. The servers do not import this package: they
// classify an error by its behaviour, and both temporary errors have a method
// Temporary() bool that returns true (as net.Error's).
var (
	ErrInvalid           = errors.New("auth: invalid credentials")
	ErrThrottled   error = temporary("auth: too many failures, try again later")
	ErrUnavailable error = temporary("auth: authentication backend unavailable")
)

// temporary is an error worth retrying later.
type temporary string

func (e temporary) Error() string   { return string(e) }
func (e temporary) Temporary() bool { return true }

// Unavailable tells ErrUnavailable from ErrThrottled for a caller that classifies by
// behaviour: the web page answers a login the backend could not check with 503 and a
// "try again" page, a throttled one with 429.
func (e temporary) Unavailable() bool { return error(e) == ErrUnavailable }
