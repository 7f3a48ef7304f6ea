package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/portcullis-mail/portcullis/auth"
)

// Local is the single node's directory: users of the local database (then of LDAP, as
// auth.Service asks them), every one of them living here (MailHost HostHere).
type Local struct {
	Users   *auth.DB
	LDAP    *auth.LDAP // optional, asked after Users
	Quota   int64
	Aliases func(ctx context.Context, user string) ([]string, error) // optional
}

// Lookup implements Directory.
func (l *Local) Lookup(ctx context.Context, address string) (User, error) {
	addr, hash, err := l.Users.PasswordHash(ctx, address)
	switch {
	case errors.Is(err, auth.ErrUnknownUser) && l.LDAP != nil:
		attrs, lerr := l.LDAP.Attributes(ctx, address)
		if errors.Is(lerr, auth.ErrInvalid) {
			return User{}, notFound(address)
		}
		if lerr != nil {
			return User{}, fmt.Errorf("directory: look up %.80q: %w", address, lerr)
		}
		if addr, err = canonicalMail(attrs[l.LDAP.MailAttribute()], address); err != nil {
			return User{}, err
		}
	case errors.Is(err, auth.ErrUnknownUser):
		return User{}, notFound(address)
	case err != nil:
		return User{}, fmt.Errorf("directory: look up %.80q: %w", address, err)
	}
	u := User{Address: addr, PasswordHash: hash, Quota: l.Quota, MailHost: HostHere}
	if l.Aliases != nil {
		all, err := l.Aliases(ctx, addr)
		if err != nil {
			return User{}, fmt.Errorf("directory: aliases of %s: %w", addr, err)
		}
		for _, a := range all {
			if a != addr {
				u.Aliases = append(u.Aliases, a)
			}
		}
	}
	return u, nil
}
