package dkim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/spf"
)

// Config configures the dkim policy (`dmarc: {}` or `dkim: {}` in the policies section).
type Config struct {
	// AuthservID names us in Authentication-Results (default: the server's host name,
	// Transaction.Hostname). Not a key of the policy: the server sets it from its
	// top-level authserv_id, the one identity of the headers it writes and removes.
	AuthservID string `yaml:"-"`
	// Timeout bounds all DNS work of the check: key, DMARC and SPF lookups (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxSignatures bounds the DKIM signatures verified per message (default 8).
	MaxSignatures int `yaml:"max_signatures"`
}

// Deps are what the policy takes from the server around it.
type Deps struct {
	// Resolver answers the key, DMARC and SPF queries: the server's shared dnsx.Cache.
	// Required.
	Resolver dnsx.Resolver
}

// Policy verifies DKIM signatures and evaluates DMARC at the data stage.
//
// DMARC needs the transaction's SPF result. Rather than depend on another policy
// instance, Policy evaluates SPF itself for the MAIL FROM identity (the HELO identity
// for the null sender, RFC 7208 §2.4) through package spf; with the shared cached
// resolver these lookups were already made by the spf policy and cost no round trip.
type Policy struct {
	cfg Config
	r   dnsx.Resolver
}

// New returns the policy.
func New(cfg Config, deps Deps) (*Policy, error) {
	if deps.Resolver == nil {
		return nil, errors.New("dkim: nil resolver")
	}
	if cfg.Timeout < 0 || cfg.MaxSignatures < 0 {
		return nil, fmt.Errorf("dkim: negative timeout or max_signatures")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxSignatures == 0 {
		cfg.MaxSignatures = DefaultMaxSignatures
	}
	return &Policy{cfg: cfg, r: deps.Resolver}, nil
}

var (
	_ policy.DataPolicy   = (*Policy)(nil)
	_ policy.FactDeclarer = (*Policy)(nil)
)

// CheckData verifies the message's signatures and applies DMARC. The Status is the DMARC
// result (none when the From: domain publishes no record); the reason is dmarc.RESULT.
func (p *Policy) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if tx.Message == nil {
		return policy.Result{Status: policy.StatusPermError, Reason: "dmarc.no_message", Err: errors.New("dkim: no message")}
	}
	raw, err := tx.Message.Bytes()
	if err != nil {
		return policy.Result{Status: policy.StatusTempError, Reason: "dmarc.read", Err: fmt.Errorf("dkim: read message: %w", err)}
	}

	var errs []error
	sigs, err := Verify(ctx, p.r, bytesReader(raw), &VerifyOptions{MaxSignatures: p.cfg.MaxSignatures})
	if err != nil {
		errs = append(errs, err)
	}
	var passDomains []string
	list := make([]map[string]any, 0, len(sigs))
	for _, s := range sigs {
		list = append(list, map[string]any{
			"domain": s.Domain, "selector": s.Selector, "result": s.Result, "reason": s.Reason,
		})
		if s.Result == ResultPass {
			passDomains = append(passDomains, s.Domain)
		}
	}

	// SPF for the transaction (see the type comment).
	sender := spf.MailFrom(tx)
	spfRes, _ := spf.Check(ctx, p.r, tx.Conn.IP, tx.Conn.HELO, sender, spf.WithReceiver(tx.Hostname))

	froms := tx.Message.Header.Values("From")
	fromDomain := ""
	if len(froms) == 1 {
		fromDomain = FromDomain(froms[0])
	}
	in := Input{
		FromDomain: fromDomain, SPFDomain: spfRes.Domain, SPFResult: string(spfRes.Status),
		DKIMPassDomains: passDomains, SampleKey: tx.Message.Header.Get("Message-Id"),
	}
	if in.SampleKey == "" {
		in.SampleKey = fromDomain + tx.Message.Header.Get("Date")
	}
	var ev Evaluation
	switch {
	case fromDomain == "":
		// RFC 7489 §6.6.1: without exactly one From: field with one domain there is no
		// author domain to authenticate.
		ev = Evaluate(nil, in)
		ev.Result = DMARCPermError
		errs = append(errs, fmt.Errorf("dmarc: need one From: field with a domain, have %d field(s) %q", len(froms), froms))
	default:
		rec, err := LookupDMARC(ctx, p.r, fromDomain)
		switch {
		case err == nil:
			ev = Evaluate(rec, in)
		case errors.Is(err, ErrNoRecord):
			ev = Evaluate(nil, in)
		case dnsx.IsTemporary(err) || ctx.Err() != nil:
			ev = Evaluate(nil, in)
			ev.Result = DMARCTempError
			errs = append(errs, err)
		default:
			ev = Evaluate(nil, in)
			ev.Result = DMARCPermError
			errs = append(errs, err)
		}
	}

	authserv := p.cfg.AuthservID
	if authserv == "" {
		authserv = tx.Hostname
	}
	helo := ""
	if sender == "" {
		helo = tx.Conn.HELO
	}
	ar := AuthResults(authserv, AuthResultsInput{
		SPFResult: string(spfRes.Status), SPFMailFrom: sender, SPFHelo: helo, Signatures: sigs,
		DMARCResult: ev.Result, FromDomain: fromDomain, Policy: ev.Policy,
	})
	if passDomains == nil {
		passDomains = []string{}
	}
	return policy.Result{
		Status: policy.Status(ev.Result),
		Reason: "dmarc." + ev.Result,
		Facts: map[string]any{
			"dkim":              list,
			"dkim_pass_domains": passDomains,
			"dmarc":             ev.Result,
			"policy":            ev.Policy,
			"record_policy":     ev.RecordPolicy,
			"pct":               ev.Percent,
			"aligned_spf":       ev.AlignedSPF,
			"aligned_dkim":      ev.AlignedDKIM,
			"from_domain":       fromDomain,
			"org_domain":        ev.OrgDomain,
			"spf":               string(spfRes.Status),
		},
		Headers: []policy.Header{{Name: "Authentication-Results", Value: ar}},
		Err:     errors.Join(errs...),
	}
}

// DeclareFacts lists the facts CheckData reports, by example.
func (p *Policy) DeclareFacts() map[string]any {
	return map[string]any{
		"dkim": []map[string]any{{
			"domain": "example.com", "selector": "sel1", "result": "pass", "reason": "",
		}},
		"dkim_pass_domains": []string{"example.com"},
		"dmarc":             "pass",
		"policy":            "reject",
		"record_policy":     "reject",
		"pct":               100,
		"aligned_spf":       true,
		"aligned_dkim":      true,
		"from_domain":       "example.com",
		"org_domain":        "example.com",
		"spf":               "pass",
	}
}
