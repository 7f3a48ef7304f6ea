package route

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/portcullis-mail/portcullis/address"
)

// Owns reports whether user, an authenticated user (the canonical address an
// Authenticator returns), may use sender as envelope sender: Postfix's
// smtpd_sender_login_maps with reject_sender_login_mismatch, where the owners of an
// address are, all of them:
//
//   - the user whose address it is, in any case and with any extension (alice+tag@ is
//     alice's, as the recipient delimiter makes it at delivery);
//   - every user the address delivers to: its expansion through the canonical maps,
//     virtual aliases and aliases (as Expand makes it, extensions ignored) reaches
//     them, so a user owns their aliases and the lists they are on, as Postfix sites
//     that use the virtual map as login map have it;
//   - the users the sender login map lists for it (keys in Postfix's order: user@domain,
//     user@domain without extension, user and user without extension in local domains,
//     @domain; the first key found answers).
//
// The null sender ("") belongs to NullSenderUsers and to the users the login map lists
// under "<>". An address whose expansion fails for good (an alias loop) is owned by
// none but the first and third kinds. The error is temporary: a map that cannot be
// read.
func (r *Router) Owns(ctx context.Context, user, sender string) (bool, error) {
	user = canonUser(user)
	if user == "" {
		return false, nil
	}
	if err := r.ensure(sender); err != nil {
		return false, err
	}
	if sender == "" {
		if r.nullUsers[user] {
			return true, nil
		}
		return r.loginListed("<>", user), nil
	}
	local, domain, ok := address.Split(sender)
	if !ok {
		return false, nil
	}
	if r.owner(local, domain) == user {
		return true, nil
	}
	if r.logins != nil {
		l, b := strings.ToLower(local), r.base(local)
		keys := []string{l + "@" + domain, b + "@" + domain}
		if r.local[domain] {
			keys = append(keys, l, b)
		}
		for _, k := range append(keys, "@"+domain) {
			if owners, found := r.logins.get(k); found {
				if slices.ContainsFunc(owners, func(o string) bool { return canonUser(o) == user }) {
					return true, nil
				}
				break
			}
		}
	}
	finals, err := r.Expand(ctx, sender)
	if err != nil {
		var re *ResolveError
		if errors.As(err, &re) && !re.Temporary {
			return false, nil
		}
		return false, err
	}
	for _, f := range finals {
		if l, d, ok := address.Split(f); ok && r.owner(l, d) == user {
			return true, nil
		}
	}
	return false, nil
}

// SenderOwned implements smtpd.SenderOwners with Owns.
func (r *Router) SenderOwned(ctx context.Context, user string, sender address.Address) (bool, error) {
	if sender.IsNull() {
		return r.Owns(ctx, user, "")
	}
	return r.Owns(ctx, user, sender.String())
}

// loginListed reports whether the login map lists user under key.
func (r *Router) loginListed(key, user string) bool {
	if r.logins == nil {
		return false
	}
	owners, _ := r.logins.get(key)
	return slices.ContainsFunc(owners, func(o string) bool { return canonUser(o) == user })
}

// owner returns the user whose mailbox local@domain is: the local part without its
// extension, in lower case, at the domain in the form users are stored under.
func (r *Router) owner(local, domain string) string {
	if d, err := address.NormalizeDomain(domain); err == nil {
		domain = d
	}
	return r.base(local) + "@" + domain
}

// canonUser folds a user name as Normalize stores it, or to lower case when it is not
// an address Normalize accepts.
func canonUser(u string) string {
	u = strings.TrimSpace(u)
	if c, err := address.Normalize(u); err == nil {
		return c
	}
	return strings.ToLower(u)
}
