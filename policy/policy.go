// Package policy holds the model every portcullis check plugs into: the Transaction (the
// connection, the envelope and the message as the SMTP server sees them), the Stages of an
// SMTP dialogue, the Result a policy reports, and the Engine that runs the admin's expr
// rules over those results to reach a Decision (the SMTP reply).
//
// Policies report findings; rules decide. A policy implements one small interface per stage
// it serves (ConnectPolicy, HeloPolicy, MailPolicy, RcptPolicy, DataPolicy); the Engine
// discovers them once by type assertion, runs only the instances that a stage's rules
// reference, concurrently, each with a timeout and recover, and memoises their results for
// the transaction.
//
// The policy packages (rbl, spf, dkim, headers, content, bayes, virus) share one shape:
// New(Config, Deps) (*Policy, error) builds a policy from what the admin writes (Config,
// decoded from the rule file) and what the server provides (Deps: the shared resolver, a
// logger; omitted when a policy needs nothing), a package's second policy is NewX(XConfig,
// ...) (*X, error), a client for an outside service is NewClient, and each policy type
// states the stage interfaces it implements with a guard such as
// var _ policy.DataPolicy = (*Policy)(nil).
package policy

import (
	"context"
	"fmt"
	"strings"
)

// Stage is a point of the SMTP dialogue at which rules run.
type Stage int

// The stages, in dialogue order.
const (
	StageConnect Stage = iota // a client connected
	StageHelo                 // HELO/EHLO received
	StageMail                 // MAIL FROM received
	StageRcpt                 // one RCPT TO received (rules run once per recipient)
	StageData                 // the message is received, header parsed
	StageQueued               // the message was accepted and spooled (observe only)
	numStages
)

var stageNames = [...]string{"connect", "helo", "mail", "rcpt", "data", "queued"}

func (s Stage) String() string {
	if s < 0 || s >= numStages {
		return fmt.Sprintf("stage(%d)", int(s))
	}
	return stageNames[s]
}

// ParseStage returns the stage named s ("connect", "helo", "mail", "rcpt", "data", "queued").
func ParseStage(s string) (Stage, error) {
	for i, n := range stageNames {
		if n == s {
			return Stage(i), nil
		}
	}
	return 0, fmt.Errorf("unknown stage %q (want connect, helo, mail, rcpt, data or queued)", s)
}

// Stages lists every stage in dialogue order.
func Stages() []Stage {
	out := make([]Stage, numStages)
	for i := range out {
		out[i] = Stage(i)
	}
	return out
}

// Status is the outcome of one policy check. The values follow the vocabulary of SPF and
// Authentication-Results (RFC 8601) so that results map onto headers without translation.
type Status string

// Statuses a policy can report.
const (
	StatusNone      Status = "none"      // nothing to check (no record, no list entry)
	StatusPass      Status = "pass"      // the check passed (allowlisted, clean, authenticated)
	StatusFail      Status = "fail"      // the check failed (listed, infected, forged)
	StatusSoftFail  Status = "softfail"  // weak failure (SPF ~all)
	StatusNeutral   Status = "neutral"   // explicitly no opinion
	StatusTempError Status = "temperror" // transient failure: DNS timeout, scanner down
	StatusPermError Status = "permerror" // permanent error: broken record, bad config
)

// Header is a header field a policy or rule asks to add to an accepted message.
type Header struct {
	Name  string
	Value string
}

// Clean returns h fit to be written into a message: ok is false when the name is empty
// or holds white space, control characters, 8-bit bytes or a colon (RFC 5322 §2.2); the
// value keeps its folding (CRLF followed by white space) and any other CR or LF becomes
// a space, so that a value can never start a new header field.
func (h Header) Clean() (Header, bool) {
	if h.Name == "" {
		return h, false
	}
	for i := 0; i < len(h.Name); i++ {
		if c := h.Name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return h, false
		}
	}
	if !strings.ContainsAny(h.Value, "\r\n") {
		return h, true
	}
	v := h.Value
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' && i+2 < len(v) && v[i+1] == '\n' && (v[i+2] == ' ' || v[i+2] == '\t') {
			b.WriteString("\r\n")
			i++
			continue
		}
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b.WriteByte(c)
	}
	h.Value = b.String()
	return h, true
}

// Unfolded is the value of a Clean header on one line (RFC 5322 §2.2.3: unfolding
// removes the CRLF before the white space), for where only one line fits, as Postfix's
// PREPEND action.
func (h Header) Unfolded() string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(h.Value)
}

// Result is what a policy instance reports: an observation, never an SMTP reply.
type Result struct {
	Status Status
	// Score is the policy's own weight or probability (an RBL weight, a Bayes
	// probability); rules decide what it means.
	Score float64
	// Reason is a stable, dotted reason code such as "rbl.listed" or "virus.found".
	Reason string
	// Facts are named observations visible to rules as policy.facts.NAME and, when no
	// standard field has the same name, as policy.NAME.
	Facts map[string]any
	// Headers are added to the message when it is accepted (Received-SPF, ...).
	Headers []Header
	// Err is the error behind a temperror or permerror; it is logged and visible to
	// rules as policy.error.
	Err error
}

// Fact returns the fact named name, or nil.
func (r Result) Fact(name string) any { return r.Facts[name] }

// ConnectPolicy is implemented by policies that judge the connecting client.
type ConnectPolicy interface {
	CheckConnect(ctx context.Context, tx *Transaction) Result
}

// HeloPolicy is implemented by policies that judge the HELO/EHLO name.
type HeloPolicy interface {
	CheckHelo(ctx context.Context, tx *Transaction) Result
}

// MailPolicy is implemented by policies that judge the envelope sender.
type MailPolicy interface {
	CheckMail(ctx context.Context, tx *Transaction) Result
}

// RcptPolicy is implemented by policies that judge one recipient, tx.Rcpt. Their results
// are memoised per recipient.
type RcptPolicy interface {
	CheckRcpt(ctx context.Context, tx *Transaction) Result
}

// DataPolicy is implemented by policies that judge the message, tx.Message.
type DataPolicy interface {
	CheckData(ctx context.Context, tx *Transaction) Result
}

// FactDeclarer is implemented by policies that declare, by example values, the facts they
// report. The rule compiler then rejects a rule that names an undeclared fact, so a typo
// such as zen.lsited is a load error rather than a rule that never matches.
type FactDeclarer interface {
	DeclareFacts() map[string]any
}

// Bounded is implemented by policies whose checks are pure computation under hard limits,
// with no I/O (MIME walking, header maps, date checks): the engine runs them in the
// calling goroutine, without the watchdog goroutine a timeout needs, which saves two
// goroutine hand-offs per check on a busy server.
type Bounded interface {
	Bounded() bool
}

func isBounded(p Policy) bool {
	b, ok := p.(Bounded)
	return ok && b.Bounded()
}

// Policy is any value implementing at least one of the stage interfaces.
type Policy any

// Serves reports the stages a policy implements. A policy (such as a wrapper) may say so
// itself with a Stages() []Stage method.
func Serves(p Policy) []Stage {
	if s, ok := p.(interface{ Stages() []Stage }); ok {
		return s.Stages()
	}
	var out []Stage
	if _, ok := p.(ConnectPolicy); ok {
		out = append(out, StageConnect)
	}
	if _, ok := p.(HeloPolicy); ok {
		out = append(out, StageHelo)
	}
	if _, ok := p.(MailPolicy); ok {
		out = append(out, StageMail)
	}
	if _, ok := p.(RcptPolicy); ok {
		out = append(out, StageRcpt)
	}
	if _, ok := p.(DataPolicy); ok {
		out = append(out, StageData)
	}
	return out
}

// check runs policy p for stage s. The caller ensures p serves s.
func check(ctx context.Context, p Policy, s Stage, tx *Transaction) Result {
	switch s {
	case StageConnect:
		return p.(ConnectPolicy).CheckConnect(ctx, tx)
	case StageHelo:
		return p.(HeloPolicy).CheckHelo(ctx, tx)
	case StageMail:
		return p.(MailPolicy).CheckMail(ctx, tx)
	case StageRcpt:
		return p.(RcptPolicy).CheckRcpt(ctx, tx)
	case StageData:
		return p.(DataPolicy).CheckData(ctx, tx)
	}
	return Result{Status: StatusPermError, Err: fmt.Errorf("policy does not serve stage %s", s)}
}
