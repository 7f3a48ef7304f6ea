package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/portcullis-mail/portcullis/policy"
)

// UserLookup says whether an address has a mailbox. *DB and *LDAP implement it; an alias
// map can too.
type UserLookup interface {
	Exists(ctx context.Context, address string) (bool, error)
}

// RecipientsConfig configures recipient validation at RCPT.
type RecipientsConfig struct {
	// RecipientDelimiter separates a local part from an extension (Postfix
	// recipient_delimiter): with "+", alice+lists@example.org is accepted when
	// alice@example.org exists. Several characters mean any of them. Default: none.
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	// Accept lists local parts accepted in every local domain without a lookup, for
	// role addresses the delivery router aliases (RFC 5321 §4.5.1 requires
	// "postmaster"). Default: none (create postmaster@DOMAIN as a user or alias).
	Accept []string `yaml:"accept"`
}

// Recipients validates local recipients for the SMTP server (smtpd's
// RecipientValidator): a recipient exists when any source knows it. Unknown local
// recipients get 550 5.1.1 at RCPT from smtpd.
type Recipients struct {
	cfg     RecipientsConfig
	sources []UserLookup
	accept  map[string]bool
}

// NewRecipients returns a validator asking sources in order (nil sources are skipped).
func NewRecipients(cfg RecipientsConfig, sources ...UserLookup) (*Recipients, error) {
	r := &Recipients{cfg: cfg, accept: map[string]bool{}}
	for _, s := range sources {
		if s != nil {
			r.sources = append(r.sources, s)
		}
	}
	if len(r.sources) == 0 {
		return nil, errors.New("auth: recipient validation needs a user source")
	}
	for _, l := range cfg.Accept {
		r.accept[strings.ToLower(l)] = true
	}
	return r, nil
}

// ValidRecipient reports whether rcpt has a mailbox. An address that is not a valid
// user address does not. Lookup errors are returned (smtpd answers 451 4.3.0).
func (r *Recipients) ValidRecipient(ctx context.Context, rcpt policy.Address) (bool, error) {
	addr, err := NormalizeAddress(rcpt.Local + "@" + rcpt.Domain)
	if err != nil {
		return false, nil
	}
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr[:at], addr[at:]
	if r.accept[local] {
		return true, nil
	}
	cands := []string{addr}
	if d := r.cfg.RecipientDelimiter; d != "" {
		if i := strings.IndexAny(local, d); i > 0 {
			cands = append(cands, local[:i]+domain)
		}
	}
	for _, c := range cands {
		for _, s := range r.sources {
			ok, err := s.Exists(ctx, c)
			if err != nil {
				return false, fmt.Errorf("auth: recipient %s: %w", c, err)
			}
			if ok {
				return true, nil
			}
		}
	}
	return false, nil
}
