package virus

import (
	"context"
	"errors"

	"github.com/portcullis-mail/portcullis/policy"
)

// Reason codes of the policy's results.
const (
	ReasonFound       = "virus.found"       // fail: a signature matched (fact virus)
	ReasonClean       = "virus.clean"       // pass
	ReasonUnavailable = "virus.unavailable" // temperror: no daemon could scan
	ReasonTooLarge    = "virus.too_large"   // permerror: larger than the scanner accepts
	ReasonError       = "virus.error"       // temperror: the message could not be read
	ReasonNoMessage   = "virus.no_message"  // none: called without a message
)

// Policy is the data-stage policy: it scans the message once with a Client and reports
//
//	fail       virus.found        facts.virus = the signature name
//	pass       virus.clean
//	temperror  virus.unavailable  no daemon could scan (rules should tempfail: fail closed)
//	permerror  virus.too_large    the message exceeds StreamMaxLength or max_size
//	temperror  virus.error        the received message could not be read
//
// too_large is a permerror because retrying the same message can never succeed, so a
// rule must choose between rejecting (552 5.3.4) and accepting it unscanned.
type Policy struct {
	c *Client
}

// New returns the policy with a client for cfg. It does no I/O.
func New(cfg Config) (*Policy, error) {
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Policy{c: c}, nil
}

// Client returns the policy's client (for health checks and admin commands, or to scan
// with it directly).
func (p *Policy) Client() *Client { return p.c }

// CheckData scans tx.Message.
func (p *Policy) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	if tx == nil || tx.Message == nil {
		return policy.Result{Status: policy.StatusNone, Reason: ReasonNoMessage}
	}
	res, err := p.c.Scan(ctx, tx.Message.Reader())
	// Every fact is always set (virus is "" unless infected) so rules never meet nil.
	facts := map[string]any{"virus": "", "daemon": res.Daemon, "size": int(res.Size)}
	var se *sourceError
	switch {
	case errors.Is(err, ErrTooLarge):
		return policy.Result{Status: policy.StatusPermError, Reason: ReasonTooLarge, Facts: facts, Err: err}
	case errors.As(err, &se):
		return policy.Result{Status: policy.StatusTempError, Reason: ReasonError, Facts: facts, Err: err}
	case err != nil:
		return policy.Result{Status: policy.StatusTempError, Reason: ReasonUnavailable, Facts: facts, Err: err}
	case res.Infected:
		facts["virus"] = res.Signature
		return policy.Result{Status: policy.StatusFail, Score: 1, Reason: ReasonFound, Facts: facts}
	}
	return policy.Result{Status: policy.StatusPass, Reason: ReasonClean, Facts: facts}
}

// DeclareFacts lists the facts CheckData may report, by example value.
func (p *Policy) DeclareFacts() map[string]any {
	return map[string]any{
		"virus":  "Win.Test.EICAR_HDB-1",
		"daemon": "unix:/run/clamav/clamd.ctl",
		"size":   0,
	}
}

var (
	_ policy.DataPolicy   = (*Policy)(nil)
	_ policy.FactDeclarer = (*Policy)(nil)
)
