package access

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
)

// Config is one access check: exactly one of the five check_*_access keys names its table,
// as in a Postfix restriction list.
type Config struct {
	// CheckClientAccess is Postfix's check_client_access: the client's host name (its
	// forward-confirmed name, else "unknown") and parents, then its address and shorter
	// prefixes. Connect stage.
	CheckClientAccess string `yaml:"check_client_access"`
	// CheckReverseClientHostnameAccess is check_reverse_client_hostname_access: the
	// unverified PTR name, then the address. Connect stage.
	CheckReverseClientHostnameAccess string `yaml:"check_reverse_client_hostname_access"`
	// CheckHeloAccess is check_helo_access: the HELO/EHLO name and its parent domains.
	// Helo stage.
	CheckHeloAccess string `yaml:"check_helo_access"`
	// CheckSenderAccess is check_sender_access: the MAIL FROM address ("<>" for the null
	// sender). Mail stage.
	CheckSenderAccess string `yaml:"check_sender_access"`
	// CheckRecipientAccess is check_recipient_access: each RCPT TO address. Rcpt stage.
	CheckRecipientAccess string `yaml:"check_recipient_access"`
	// ParentDomainMatchesSubdomains: whether a table key "example.com" also matches
	// subdomains (Postfix's default, smtpd_access_maps in parent_domain_matches_subdomains);
	// when false, ".example.com" keys match subdomains instead (default true).
	ParentDomainMatchesSubdomains *bool `yaml:"parent_domain_matches_subdomains"`
	// RecipientDelimiter is Postfix's recipient_delimiter: the characters that start an
	// address extension, so that user+ext@example.com also finds user@example.com
	// (default none, as Postfix).
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	// CheckInterval is how often a lookup looks whether the table file changed (default
	// 10s). SIGHUP re-reads it in any case.
	CheckInterval time.Duration `yaml:"check_interval"`
	// MatchTimeout bounds one backtracking match of a regexp: or pcre: table (default
	// 100ms).
	MatchTimeout time.Duration `yaml:"match_timeout"`
}

// Deps are what the server gives the policy.
type Deps struct {
	Logger *slog.Logger
}

// Which names the five checks.
type Which int

// The checks, by the Postfix restriction that names them.
const (
	CheckClient Which = iota
	CheckReverseClient
	CheckHelo
	CheckSender
	CheckRecipient
)

var whichNames = [...]string{"check_client_access", "check_reverse_client_hostname_access", "check_helo_access", "check_sender_access", "check_recipient_access"}

func (w Which) String() string { return whichNames[w] }

// Policy is one access check over one table.
type Policy struct {
	which Which
	m     *Map
	keys  Keys
}

var (
	_ policy.ConnectPolicy = (*Policy)(nil)
	_ policy.HeloPolicy    = (*Policy)(nil)
	_ policy.MailPolicy    = (*Policy)(nil)
	_ policy.RcptPolicy    = (*Policy)(nil)
	_ policy.FactDeclarer  = (*Policy)(nil)
	_ policy.Bounded       = (*Policy)(nil)
)

// New loads the table cfg names.
func New(cfg Config, deps Deps) (*Policy, error) {
	specs := []string{cfg.CheckClientAccess, cfg.CheckReverseClientHostnameAccess, cfg.CheckHeloAccess, cfg.CheckSenderAccess, cfg.CheckRecipientAccess}
	which, n := Which(0), 0
	for i, s := range specs {
		if s != "" {
			which, n = Which(i), n+1
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("access: set exactly one of check_client_access, check_reverse_client_hostname_access, check_helo_access, check_sender_access, check_recipient_access (got %d)", n)
	}
	m, err := Open(specs[which], MapOptions{CheckInterval: cfg.CheckInterval, MatchTimeout: cfg.MatchTimeout, Logger: deps.Logger})
	if err != nil {
		return nil, err
	}
	parent := cfg.ParentDomainMatchesSubdomains == nil || *cfg.ParentDomainMatchesSubdomains
	return &Policy{which: which, m: m, keys: Keys{ParentMatchesSubdomains: parent, RecipientDelimiter: cfg.RecipientDelimiter}}, nil
}

// Map returns the policy's table.
func (p *Policy) Map() *Map { return p.m }

// Which returns the check the policy runs.
func (p *Policy) Which() Which { return p.which }

// Stages says the one stage the check serves.
func (p *Policy) Stages() []policy.Stage {
	switch p.which {
	case CheckHelo:
		return []policy.Stage{policy.StageHelo}
	case CheckSender:
		return []policy.Stage{policy.StageMail}
	case CheckRecipient:
		return []policy.Stage{policy.StageRcpt}
	}
	return []policy.Stage{policy.StageConnect}
}

// Bounded: a lookup is computation in memory (a stat of the file at most every
// check_interval), each backtracking match bounded by match_timeout.
func (p *Policy) Bounded() bool { return true }

// Lookup runs the policy's check over tx.
func (p *Policy) Lookup(tx *policy.Transaction) (Found, bool, error) {
	switch p.which {
	case CheckClient:
		return p.m.Client(p.keys, tx.Conn.Hostname, tx.Conn.IP)
	case CheckReverseClient:
		name := ""
		if len(tx.Conn.PTRNames) > 0 {
			name = tx.Conn.PTRNames[0]
		}
		return p.m.ReverseClient(p.keys, name, tx.Conn.IP)
	case CheckHelo:
		return p.m.Helo(p.keys, tx.Conn.HELO)
	case CheckSender:
		return p.m.Sender(p.keys, tx.Envelope.From.String())
	default:
		return p.m.Recipient(p.keys, tx.Rcpt.String())
	}
}

// CheckConnect runs check_client_access or check_reverse_client_hostname_access.
func (p *Policy) CheckConnect(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(tx)
}

// CheckHelo runs check_helo_access.
func (p *Policy) CheckHelo(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(tx)
}

// CheckMail runs check_sender_access.
func (p *Policy) CheckMail(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(tx)
}

// CheckRcpt runs check_recipient_access.
func (p *Policy) CheckRcpt(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(tx)
}

// check turns a lookup into a result. Status: fail for a refusing action (reason
// access.reject or access.defer), pass for OK (access.ok), neutral for another action
// (access.hold, access.discard, access.warn, access.prepend, access.filter,
// access.redirect, access.bcc, access.info), none when nothing matched or DUNNO
// (access.none), temperror for a substituted result that is no action (access.error).
func (p *Policy) check(tx *policy.Transaction) policy.Result {
	f, ok, err := p.Lookup(tx)
	facts := foundFacts(f, ok)
	r := policy.Result{Status: policy.StatusNone, Reason: "access.none", Facts: facts}
	switch {
	case ok && err != nil && f.Action.Name == "":
		r.Status, r.Reason, r.Err = policy.StatusTempError, "access.error", err
		facts["reply"] = "451 4.3.5 Server configuration error"
		facts["defer"] = true
		return r
	case !ok:
		if err != nil {
			r.Err = err // a pattern that timed out was skipped
		}
		return r
	}
	a := f.Action
	switch {
	case a.Reject():
		r.Status, r.Reason = policy.StatusFail, "access.reject"
	case conditional(a):
		r.Status, r.Reason = policy.StatusFail, "access."+lower(a.Name)
	case a.Defer():
		r.Status, r.Reason = policy.StatusFail, "access.defer"
	case a.Name == "OK":
		r.Status, r.Reason = policy.StatusPass, "access.ok"
	case a.Name == "DUNNO":
	default:
		r.Status, r.Reason = policy.StatusNeutral, "access."+lower(a.Name)
	}
	if a.Name == "PREPEND" {
		if name, val, ok := cutHeader(a.Text); ok {
			r.Headers = []policy.Header{{Name: name, Value: val}}
		}
	}
	return r
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func cutHeader(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			if i == 0 {
				return "", "", false
			}
			v := s[i+1:]
			for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
				v = v[1:]
			}
			return s[:i], v, true
		}
	}
	return "", "", false
}

func foundFacts(f Found, ok bool) map[string]any {
	a := f.Action
	line := ""
	if ok {
		line = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return map[string]any{
		"found":  ok && a.Name != "DUNNO",
		"action": a.Name,
		"text":   a.Text,
		"code":   a.Code,
		"reply":  f.Reply,
		"key":    f.Key,
		"value":  f.Value,
		"line":   line,
		"ok":     a.Name == "OK",
		"reject": a.Reject(),
		"defer":  a.Defer() && !conditional(a),
		// DEFER_IF_PERMIT: defer only when the rest would accept; rules test this.
		"defer_if_permit": a.Name == "DEFER_IF_PERMIT",
		"defer_if_reject": a.Name == "DEFER_IF_REJECT",
		"hold":            a.Name == "HOLD",
		"discard":         a.Name == "DISCARD",
		"warn":            a.Name == "WARN",
		"info":            a.Name == "INFO",
		"prepend":         textIf(a, "PREPEND"),
		"filter":          textIf(a, "FILTER"),
		"redirect":        textIf(a, "REDIRECT"),
		"bcc":             textIf(a, "BCC"),
	}
}

// conditional: DEFER_IF_PERMIT and DEFER_IF_REJECT, which Postfix applies only at the end
// of the restrictions (a rule placed last in its stage does the same).
func conditional(a Action) bool { return a.Name == "DEFER_IF_PERMIT" || a.Name == "DEFER_IF_REJECT" }

func textIf(a Action, name string) string {
	if a.Name == name {
		return a.Text
	}
	return ""
}

// DeclareFacts declares the facts with example values.
func (p *Policy) DeclareFacts() map[string]any {
	a, _ := ParseAction("REJECT go away")
	return foundFacts(Found{Entry: Entry{Key: "192.0.2.1", Value: "REJECT go away", File: "/etc/postfix/access", Line: 3},
		Action: a, Reply: a.Reply("unknown[192.0.2.1]", ClassClient)}, true)
}
