package directory

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/auth"
)

// LDAPConfig names the attributes of a user's entry (found with auth.ldap's
// recipient_filter) that the directory reads.
type LDAPConfig struct {
	// MailHostAttribute holds the back-end of the user's mailbox (default "mailHost",
	// misc.schema's inetLocalMailRecipient). An entry without it lives here.
	MailHostAttribute string `yaml:"mail_host_attribute"`
	// QuotaAttribute, when set, holds the quota in bytes.
	QuotaAttribute string `yaml:"quota_attribute"`
	// StateAttribute, when set, holds the state ("moving").
	StateAttribute string `yaml:"state_attribute"`
	// AliasAttribute holds the other addresses of the user (default
	// "mailLocalAddress").
	AliasAttribute string `yaml:"alias_attribute"`
}

// LDAP is the directory in the LDAP server auth authenticates against. It asks through
// auth's pooled connections, so logins and lookups share one pool and one set of
// limits. Passwords are verified by binds: PasswordHash is always empty.
type LDAP struct {
	cfg   LDAPConfig
	conn  *auth.LDAP
	attrs []string
}

// NewLDAP returns the directory of conn with cfg's attribute names.
func NewLDAP(cfg LDAPConfig, conn *auth.LDAP) (*LDAP, error) {
	if conn == nil {
		return nil, errors.New("directory: ldap without a connection")
	}
	if cfg.MailHostAttribute == "" {
		cfg.MailHostAttribute = "mailHost"
	}
	if cfg.AliasAttribute == "" {
		cfg.AliasAttribute = "mailLocalAddress"
	}
	attrs := []string{cfg.MailHostAttribute, cfg.AliasAttribute}
	for _, a := range []string{cfg.QuotaAttribute, cfg.StateAttribute} {
		if a != "" {
			attrs = append(attrs, a)
		}
	}
	return &LDAP{cfg: cfg, conn: conn, attrs: attrs}, nil
}

// Lookup implements Directory.
func (l *LDAP) Lookup(ctx context.Context, addr string) (User, error) {
	v, err := l.conn.Attributes(ctx, addr, l.attrs...)
	switch {
	case errors.Is(err, auth.ErrInvalid): // unknown, or ambiguous (logged by auth)
		return User{}, notFound(addr)
	case err != nil:
		return User{}, fmt.Errorf("directory: look up %.80q: %w", addr, err)
	}
	mail, err := canonicalMail(v[l.conn.MailAttribute()], addr)
	if err != nil {
		return User{}, err
	}
	u := User{Address: mail, MailHost: first(v[l.cfg.MailHostAttribute])}
	if l.cfg.StateAttribute != "" {
		u.State = first(v[l.cfg.StateAttribute])
	}
	if l.cfg.QuotaAttribute != "" {
		if q := first(v[l.cfg.QuotaAttribute]); q != "" {
			if u.Quota, err = strconv.ParseInt(q, 10, 64); err != nil || u.Quota < 0 {
				return User{}, fmt.Errorf("directory: %s of %s: %q is not a size in bytes", l.cfg.QuotaAttribute, mail, q)
			}
		}
	}
	for _, a := range v[l.cfg.AliasAttribute] {
		if n, err := address.Normalize(a); err == nil && n != mail {
			u.Aliases = append(u.Aliases, n)
		}
	}
	return u, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// canonicalMail is the normalised first value of the mail attribute, or the address
// asked for when the entry has none.
func canonicalMail(values []string, asked string) (string, error) {
	m := first(values)
	if m == "" {
		m = asked
	}
	a, err := address.Normalize(m)
	if err != nil {
		return "", fmt.Errorf("directory: entry for %.80q has no usable address: %w", asked, err)
	}
	return a, nil
}
