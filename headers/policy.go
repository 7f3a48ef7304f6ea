package headers

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/policy"
)

// Config names the table files of a maps policy instance. Each may carry a "pcre:" or
// "regexp:" prefix (else the extension decides: .regexp/.re are regexp, others pcre). As
// in Postfix, mime_header_checks and nested_header_checks default to header_checks; set
// them to "none" to disable them.
type Config struct {
	// HeaderChecks is Postfix's header_checks: matched against every top-level header
	// field.
	HeaderChecks string `yaml:"header_checks"`
	// MIMEHeaderChecks is Postfix's mime_header_checks: the MIME fields of every part
	// (default: header_checks).
	MIMEHeaderChecks string `yaml:"mime_header_checks"`
	// NestedHeaderChecks is Postfix's nested_header_checks: the header fields of attached
	// messages (default: header_checks).
	NestedHeaderChecks string `yaml:"nested_header_checks"`
	// BodyChecks is Postfix's body_checks: matched against every body line.
	BodyChecks string `yaml:"body_checks"`
	// BodySizeLimit is Postfix's body_checks_size_limit: how much of each body segment
	// body_checks inspect (default 50KiB).
	BodySizeLimit bytesize.Size `yaml:"body_checks_size_limit"`
	// MatchTimeout bounds one match of a pattern that needs the backtracking engine
	// (default 100ms).
	MatchTimeout time.Duration `yaml:"match_timeout"`
	// Limits are the MIME walk's limits (see content.Limits); the walk is shared with
	// other policies that use the same limits.
	Limits content.Limits `yaml:"limits"`
}

// Policy applies the tables to each message at the data stage.
type Policy struct {
	t   Tables
	lim content.Limits
}

var (
	_ policy.DataPolicy   = (*Policy)(nil)
	_ policy.FactDeclarer = (*Policy)(nil)
	_ policy.Bounded      = (*Policy)(nil)
)

// New reads the table files named by cfg and returns the policy. It does file I/O (once,
// at startup or reload).
func New(cfg Config) (*Policy, error) {
	var t Tables
	load := func(path string) (*Map, error) {
		if path == "" || path == "none" {
			return nil, nil
		}
		m, err := LoadMapTimeout(path, cfg.MatchTimeout)
		if err != nil {
			return nil, err
		}
		if err := m.ValidateActions(); err != nil {
			return nil, err
		}
		return m, nil
	}
	var err error
	if t.Header, err = load(cfg.HeaderChecks); err != nil {
		return nil, err
	}
	t.MIME, t.Nested = t.Header, t.Header
	if cfg.MIMEHeaderChecks != "" {
		if t.MIME, err = load(cfg.MIMEHeaderChecks); err != nil {
			return nil, err
		}
	}
	if cfg.NestedHeaderChecks != "" {
		if t.Nested, err = load(cfg.NestedHeaderChecks); err != nil {
			return nil, err
		}
	}
	if t.Body, err = load(cfg.BodyChecks); err != nil {
		return nil, err
	}
	return newPolicy(cfg, t)
}

// newPolicy returns a policy over loaded tables (cfg's file names are not read).
func newPolicy(cfg Config, t Tables) (*Policy, error) {
	if cfg.BodySizeLimit < 0 {
		return nil, fmt.Errorf("headers: body_checks_size_limit must not be negative")
	}
	if t.BodySizeLimit == 0 {
		t.BodySizeLimit = int(cfg.BodySizeLimit)
	}
	if t.Header == nil && t.MIME == nil && t.Nested == nil && t.Body == nil {
		return nil, fmt.Errorf("headers: no table configured (header_checks, mime_header_checks, nested_header_checks, body_checks)")
	}
	return &Policy{t: t, lim: cfg.Limits}, nil
}

// Tables returns the policy's tables.
func (p *Policy) Tables() Tables { return p.t }

// Bounded tells the engine the check needs no watchdog goroutine: table matching is computation, each backtracking match bounded by MatchTimeout.
func (p *Policy) Bounded() bool { return true }

// CheckData applies the tables. Status: fail for a REJECT, DEFER, DISCARD or 4xx/5xx hit
// (reason headers.reject, headers.defer, headers.discard), neutral for another action
// (headers.hold, headers.redirect, headers.filter, headers.warn, headers.hit), none when
// nothing matched (headers.none), temperror (headers.timeout) when ctx ended before every
// line was inspected and nothing rejecting was found.
func (p *Policy) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	if tx == nil || tx.Message == nil {
		return policy.Result{Status: policy.StatusPermError, Reason: "headers.error", Err: fmt.Errorf("headers: no message")}
	}
	m, err := content.ParseWith(tx.Message, p.lim)
	if err != nil {
		return policy.Result{Status: policy.StatusPermError, Reason: "headers.error", Err: err}
	}
	rep := p.t.CheckContext(ctx, m)
	r := ReportResult(rep)
	if rep.Incomplete && r.Status != policy.StatusFail {
		// Not every line was inspected: a pass would be a guess.
		r.Status, r.Reason = policy.StatusTempError, "headers.timeout"
		r.Err = fmt.Errorf("headers: inspection stopped: %w", ctx.Err())
	}
	return r
}

// ReportResult turns a report into a policy result.
func ReportResult(rep *Report) policy.Result {
	facts := reportFacts(rep)
	r := policy.Result{Status: policy.StatusNone, Reason: "headers.none", Facts: facts}
	d := rep.Decisive
	switch {
	case d == nil:
	case rep.Discard:
		r.Status, r.Reason = policy.StatusFail, "headers.discard"
	case rep.Defer:
		r.Status, r.Reason = policy.StatusFail, "headers.defer"
	case rep.Reject:
		r.Status, r.Reason = policy.StatusFail, "headers.reject"
	case rep.Hold:
		r.Status, r.Reason = policy.StatusNeutral, "headers.hold"
	case rep.Redirect != "":
		r.Status, r.Reason = policy.StatusNeutral, "headers.redirect"
	case rep.Filter != "":
		r.Status, r.Reason = policy.StatusNeutral, "headers.filter"
	case rep.Warn:
		r.Status, r.Reason = policy.StatusNeutral, "headers.warn"
	default:
		r.Status, r.Reason = policy.StatusNeutral, "headers.hit"
	}
	for _, h := range rep.Prepend {
		if name, val, ok := cutHeader(h); ok {
			r.Headers = append(r.Headers, policy.Header{Name: name, Value: val})
		}
	}
	return r
}

func cutHeader(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ':' {
			if i == 0 {
				return "", "", false
			}
			v := s[i+1:]
			for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
				v = v[1:]
			}
			return s[:i], v, true
		}
		if c <= ' ' || c > '~' {
			return "", "", false
		}
	}
	return "", "", false
}

func findingFacts(f *Finding) map[string]any {
	return map[string]any{
		"table":   f.Table,
		"action":  f.Action,
		"text":    f.Text,
		"pattern": f.Hit.Pattern,
		"line":    f.Hit.Where(),
		"header":  f.Input,
		"reply":   f.Reply(),
	}
}

func reportFacts(rep *Report) map[string]any {
	hits := make([]map[string]any, 0, len(rep.Findings))
	for i := range rep.Findings {
		hits = append(hits, findingFacts(&rep.Findings[i]))
	}
	facts := map[string]any{
		"action": "", "text": "", "pattern": "", "line": "", "header": "", "table": "", "reply": "",
		"hits":     hits,
		"reject":   rep.Reject && !rep.Defer,
		"defer":    rep.Defer,
		"discard":  rep.Discard,
		"hold":     rep.Hold,
		"warn":     rep.Warn,
		"redirect": rep.Redirect,
		"filter":   rep.Filter,
		"bcc":      nonNil(rep.BCC),
		"prepend":  nonNil(rep.Prepend),
		"errors":   nonNil(rep.Errors),
	}
	if d := rep.Decisive; d != nil {
		for k, v := range findingFacts(d) {
			facts[k] = v
		}
	}
	return facts
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// DeclareFacts declares the facts with example values.
func (p *Policy) DeclareFacts() map[string]any {
	m := &Map{Name: "/etc/portcullis/header_checks.pcre"}
	rep := &Report{Reject: true}
	rep.Findings = []Finding{{Table: TableHeader, Action: "REJECT", Text: "no thanks",
		Hit: Hit{Map: m, Line: 3, Pattern: "/^Subject: .*viagra/", Result: "REJECT no thanks"}, Input: "Subject: viagra"}}
	rep.Decisive = &rep.Findings[0]
	rep.BCC, rep.Prepend, rep.Errors = []string{"a@example.com"}, []string{"X-Seen: yes"}, []string{"x"}
	rep.Redirect, rep.Filter = "a@example.com", "smtp:[127.0.0.1]:10025"
	return reportFacts(rep)
}
