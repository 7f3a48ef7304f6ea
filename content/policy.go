package content

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"weak"

	"github.com/portcullis-mail/portcullis/policy"
)

// Config configures the content policy: the walk's limits (zero fields take
// DefaultLimits).
type Config struct {
	Limits `yaml:",inline"`
}

// Policy is the data-stage policy that exposes a message's structure, attachments, text
// and URLs to rules (see README.md for the facts).
type Policy struct {
	lim Limits
}

var (
	_ policy.DataPolicy   = (*Policy)(nil)
	_ policy.FactDeclarer = (*Policy)(nil)
	_ policy.Bounded      = (*Policy)(nil)
)

// New returns a content policy.
func New(cfg Config) (*Policy, error) {
	if cfg.MaxSize < 0 || cfg.MaxParts < 0 || cfg.MaxDepth < 0 || cfg.MaxRatio < 0 {
		return nil, fmt.Errorf("content: limits must not be negative")
	}
	return &Policy{lim: cfg.Limits.withDefaults()}, nil
}

// Limits returns the policy's effective limits.
func (p *Policy) Limits() Limits { return p.lim }

// Bounded tells the engine the check needs no watchdog goroutine: the walk is pure computation under Limits.
func (p *Policy) Bounded() bool { return true }

// CheckData walks the message (once per message and limits, shared with other
// policies through Parse) and reports what it holds. Status is fail when an attachment is
// executable, has a risky extension or a suspicious name, or an archive is a bomb
// (reason content.executable, content.risky_extension, content.suspicious_name,
// content.bomb); neutral when a limit left content unexamined (content.truncated: the
// message is unknown, never clean), an archive was encrypted (content.encrypted_archive)
// or the MIME was malformed (content.malformed); pass otherwise (content.clean).
// permerror when the message cannot be read or is larger than max_size: its facts then
// say truncated, with max_size in limits_hit, so that rules on truncated walks see it.
func (p *Policy) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	if tx == nil || tx.Message == nil {
		return policy.Result{Status: policy.StatusPermError, Reason: "content.error", Err: fmt.Errorf("content: no message")}
	}
	m, err := ParseWith(tx.Message, p.lim)
	if err != nil {
		// Not walked is unknown, never clean; max_size is named only when it was the cause
		// (the message could also not be read).
		unread := &Message{Truncated: true}
		if errors.Is(err, ErrTooLarge) {
			unread.LimitsHit, unread.Errors = []string{LimitSize}, []string{"0: " + limitCodes[LimitSize]}
		}
		return policy.Result{Status: policy.StatusPermError, Reason: "content.error", Err: err, Facts: Facts(unread)}
	}
	facts := Facts(m)
	r := policy.Result{Status: policy.StatusPass, Reason: "content.clean", Facts: facts}
	switch {
	case facts["has_executable"].(bool):
		r.Status, r.Reason = policy.StatusFail, "content.executable"
	case facts["has_risky_extension"].(bool):
		r.Status, r.Reason = policy.StatusFail, "content.risky_extension"
	case facts["suspicious_names"].(bool):
		r.Status, r.Reason = policy.StatusFail, "content.suspicious_name"
	case facts["has_bomb"].(bool):
		r.Status, r.Reason = policy.StatusFail, "content.bomb"
	case m.Truncated:
		r.Status, r.Reason = policy.StatusNeutral, "content.truncated"
	case facts["has_encrypted_archive"].(bool):
		r.Status, r.Reason = policy.StatusNeutral, "content.encrypted_archive"
	case m.Malformed:
		r.Status, r.Reason = policy.StatusNeutral, "content.malformed"
	}
	return r
}

// Facts returns the facts the content policy reports for m.
func Facts(m *Message) map[string]any {
	atts := make([]map[string]any, 0, len(m.Attachments))
	names := []string{}
	var exe, risky, enc, susp, macros, bomb, mismatch bool
	for _, a := range m.Attachments {
		atts = append(atts, a.Record())
		if a.Name != "" {
			names = append(names, a.Name)
		}
		exe = exe || a.Executable
		risky = risky || a.Risky
		enc = enc || a.Encrypted
		susp = susp || a.SuspiciousName
		macros = macros || a.Macros
		bomb = bomb || a.Bomb
		mismatch = mismatch || a.TypeMismatch
	}
	return map[string]any{
		"attachments":           atts,
		"attachment_names":      names,
		"urls":                  nonNil(m.URLs),
		"url_hosts":             nonNil(m.URLHosts),
		"parts":                 len(m.Parts),
		"text_bytes":            m.TextBytes,
		"malformed":             m.Malformed,
		"truncated":             m.Truncated,
		"limits_hit":            nonNil(m.LimitsHit),
		"errors":                nonNil(m.Errors),
		"has_executable":        exe,
		"has_risky_extension":   risky,
		"has_encrypted_archive": enc,
		"has_macros":            macros,
		"has_bomb":              bomb,
		"type_mismatch":         mismatch,
		"suspicious_names":      susp,
	}
}

// DeclareFacts declares the facts with example values.
func (p *Policy) DeclareFacts() map[string]any {
	a := &Attachment{Path: "2", Name: "invoice.pdf.exe", Names: []string{"invoice.pdf.exe"}, Ext: "exe",
		Exts: []string{"pdf", "exe"}, DeclaredType: "application/pdf", DetectedType: "application/x-msdownload",
		Reasons: []string{"executable"}}
	f := Facts(&Message{Attachments: []*Attachment{a}, URLs: []string{"http://example.com/"},
		URLHosts: []string{"example.com"}, Errors: []string{"1: bad_base64"}, LimitsHit: []string{LimitParts}})
	return f
}

// cacheKey identifies one walk: the message (weakly, so the cache never keeps a message
// alive) and the limits it was walked with.
type cacheKey struct {
	msg weak.Pointer[policy.Message]
	lim Limits
}

type cacheEntry struct {
	once sync.Once
	m    *Message
	err  error
}

var cache sync.Map // cacheKey -> *cacheEntry

// Parse walks m with DefaultLimits, once: later calls for the same message, from any
// policy, return the same *Message (which callers must not modify). The memo is keyed
// by a weak pointer and dropped when m is garbage collected.
func Parse(m *policy.Message) (*Message, error) { return ParseWith(m, DefaultLimits) }

// ParseWith is Parse with explicit limits; walks with different limits are memoised
// separately.
func ParseWith(m *policy.Message, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	k := cacheKey{msg: weak.Make(m), lim: lim}
	v, loaded := cache.LoadOrStore(k, &cacheEntry{})
	e := v.(*cacheEntry)
	if !loaded {
		runtime.AddCleanup(m, func(k cacheKey) { cache.Delete(k) }, k)
	}
	e.once.Do(func() {
		raw, err := m.Bytes()
		if err != nil {
			e.err = fmt.Errorf("content: reading message: %w", err)
			return
		}
		e.m, e.err = WalkBytes(raw, lim)
	})
	return e.m, e.err
}
