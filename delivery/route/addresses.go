package route

import (
	"context"
	"slices"
	"strings"
)

// MaxAddresses bounds the addresses Addresses returns.
const MaxAddresses = 1000

// Addresses returns the addresses that deliver to user, an authenticated user (the
// canonical address an Authenticator returns): their own, and every alias and virtual
// alias key that Owns gives them (in each local domain for an aliases(5) name or a bare
// local part). Catch-alls ("@domain") are left out: they are not an address of anyone.
// It is the reverse of Expand, for showing a user the mail addressed to them (the web
// page's decision log), so it walks the maps: a few milliseconds for thousands of
// entries, to be asked once per login, not per message.
func (r *Router) Addresses(ctx context.Context, user string) ([]string, error) {
	user = canonUser(user)
	if user == "" {
		return nil, nil
	}
	if err := r.ensure(user); err != nil {
		return nil, err
	}
	var domains []string
	for d := range r.local {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	var candidates []string
	for _, m := range []*fileMap{r.aliases, r.valiases} {
		if m == nil {
			continue
		}
		d := m.data.Load()
		if d == nil {
			continue
		}
		for k := range d.m {
			switch {
			case strings.HasPrefix(k, "@"):
			case strings.Contains(k, "@"):
				candidates = append(candidates, k)
			default:
				for _, dom := range domains {
					candidates = append(candidates, k+"@"+dom)
				}
			}
		}
	}
	slices.Sort(candidates)
	out := []string{user}
	for _, a := range slices.Compact(candidates) {
		if len(out) >= MaxAddresses {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a = strings.ToLower(a)
		if a == user {
			continue
		}
		if ok, err := r.Owns(ctx, user, a); err != nil {
			return nil, err
		} else if ok {
			out = append(out, a)
		}
	}
	return slices.Compact(out), nil
}
