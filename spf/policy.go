package spf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/policy"
)

// Config configures the spf policy (`spf: {}` in the policies section).
type Config struct {
	// Helo also evaluates the HELO identity at the mail stage and reports it as the
	// helo_result fact (the helo stage always checks HELO when a rule asks).
	Helo bool `yaml:"helo"`
	// Timeout bounds all DNS work of one check (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Receiver is our host name for %{r} and Received-SPF; empty means the server's
	// host name (Transaction.Hostname).
	Receiver string `yaml:"receiver"`
	// Scope says what the instance checks (default all): all transactions, or
	// own_domains: only MAIL FROM addresses in our local domains from clients neither
	// authenticated nor trusted (the strangers that must not use our domains: the
	// shipped rule sender-ours-spoofed); anything else, and the helo stage, is status
	// none with reason spf.skipped, without a DNS query or a Received-SPF header.
	Scope string `yaml:"scope"`
}

// The scopes of Config.Scope.
const (
	ScopeAll        = "all"
	ScopeOwnDomains = "own_domains"
)

// Deps are what the policy takes from the server around it.
type Deps struct {
	// Resolver answers the SPF queries: the server's shared dnsx.Cache. Required.
	Resolver dnsx.Resolver
	// LocalDomains are our own domains, for Scope own_domains.
	LocalDomains []string
}

// Policy exposes SPF to the rules: at the helo stage the HELO identity, at the mail stage
// the MAIL FROM identity (the HELO identity for the null sender, RFC 7208 §2.4).
type Policy struct {
	cfg   Config
	r     dnsx.Resolver
	local map[string]bool // with Scope own_domains
}

// New returns the policy.
func New(cfg Config, deps Deps) (*Policy, error) {
	if deps.Resolver == nil {
		return nil, errors.New("spf: nil resolver")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("spf: negative timeout %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	p := &Policy{cfg: cfg, r: deps.Resolver}
	switch cfg.Scope {
	case "", ScopeAll:
	case ScopeOwnDomains:
		p.local = map[string]bool{}
		for _, d := range deps.LocalDomains {
			p.local[strings.ToLower(strings.TrimSuffix(d, "."))] = true
		}
	default:
		return nil, fmt.Errorf("spf: scope %q: want %s or %s", cfg.Scope, ScopeAll, ScopeOwnDomains)
	}
	return p, nil
}

// skipped is the result of a transaction outside the instance's scope.
var skipped = policy.Result{Status: policy.StatusNone, Reason: "spf.skipped"}

// inScope reports whether the instance checks tx at the mail stage.
func (p *Policy) inScope(tx *policy.Transaction) bool {
	if p.local == nil {
		return true
	}
	return p.local[tx.Envelope.From.Domain] && tx.Conn.AuthUser == "" && !tx.Conn.Trusted
}

var (
	_ policy.HeloPolicy   = (*Policy)(nil)
	_ policy.MailPolicy   = (*Policy)(nil)
	_ policy.FactDeclarer = (*Policy)(nil)
)

func (p *Policy) opts(tx *policy.Transaction) []Option {
	recv := p.cfg.Receiver
	if recv == "" {
		recv = tx.Hostname
	}
	return []Option{WithTimeout(p.cfg.Timeout), WithReceiver(recv)}
}

// CheckHelo evaluates the HELO identity (RFC 7208 §2.3).
func (p *Policy) CheckHelo(ctx context.Context, tx *policy.Transaction) policy.Result {
	if p.local != nil {
		return skipped
	}
	res, err := CheckHelo(ctx, p.r, tx.Conn.IP, tx.Conn.HELO, p.opts(tx)...)
	return toPolicy(res, err, res.Status)
}

// CheckMail evaluates the MAIL FROM identity (RFC 7208 §2.4) and, with Config.Helo, the
// HELO identity too.
func (p *Policy) CheckMail(ctx context.Context, tx *policy.Transaction) policy.Result {
	if !p.inScope(tx) {
		return skipped
	}
	from := tx.Envelope.From
	res, err := Check(ctx, p.r, tx.Conn.IP, tx.Conn.HELO, MailFrom(tx), p.opts(tx)...)
	helo := Status("")
	if p.cfg.Helo {
		if from.IsNull() {
			helo = res.Status // the same identity
		} else {
			h, _ := CheckHelo(ctx, p.r, tx.Conn.IP, tx.Conn.HELO, p.opts(tx)...)
			helo = h.Status
		}
	}
	return toPolicy(res, err, helo)
}

// MailFrom returns the sender argument of Check for tx: its reverse-path, or "" for the
// null sender (Check then evaluates postmaster@helo). The dkim policy uses it for DMARC.
func MailFrom(tx *policy.Transaction) string {
	if tx.Envelope.From.IsNull() {
		return ""
	}
	return tx.Envelope.From.String()
}

func toPolicy(res Result, err error, helo Status) policy.Result {
	return policy.Result{
		Status: policy.Status(res.Status),
		Reason: "spf." + string(res.Status),
		Facts: map[string]any{
			"result":      string(res.Status),
			"helo_result": string(helo),
			"domain":      res.Domain,
			"explanation": res.Explanation,
			"mechanism":   res.Mechanism,
			"identity":    string(res.Identity),
		},
		Headers: []policy.Header{{Name: "Received-SPF", Value: res.ReceivedSPF()}},
		Err:     err,
	}
}

// DeclareFacts lists the facts the policy reports, by example.
func (p *Policy) DeclareFacts() map[string]any {
	return map[string]any{
		"result":      "pass",
		"helo_result": "none",
		"domain":      "example.com",
		"explanation": "see https://example.com/spf",
		"mechanism":   "include:_spf.example.com",
		"identity":    "mailfrom",
	}
}
