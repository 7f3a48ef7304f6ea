package headers

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/policy"
)

// DateConfig sets the thresholds of the date policy. The facts carry the raw skews, so
// rules may use their own thresholds; these decide the Status and Reason.
type DateConfig struct {
	// MaxFuture is how far the Date may lie after the time of receipt (default 24h:
	// clocks and time zones go wrong, days ahead is a spam trick to stay on top of a
	// mailbox sorted by date).
	MaxFuture time.Duration `yaml:"max_future"`
	// MaxPast is how far the Date may lie before the time of receipt (default 14 days:
	// queues retry for up to 5 days, mailing-list digests and resent mail lag more).
	MaxPast time.Duration `yaml:"max_past"`
	// MaxReceivedSkew is how far the Date may lie from the date of the newest
	// Received header, either way (default 48h).
	MaxReceivedSkew time.Duration `yaml:"max_received_skew"`
}

// DatePolicy judges the Date header (RFC 5322 §3.6.1: exactly one, in the §3.3 syntax)
// against the time of receipt and the Received chain.
type DatePolicy struct {
	cfg DateConfig
	now func() time.Time
}

var (
	_ policy.DataPolicy   = (*DatePolicy)(nil)
	_ policy.FactDeclarer = (*DatePolicy)(nil)
	_ policy.Bounded      = (*DatePolicy)(nil)
)

// NewDate returns a date policy.
func NewDate(cfg DateConfig) (*DatePolicy, error) {
	if cfg.MaxFuture < 0 || cfg.MaxPast < 0 || cfg.MaxReceivedSkew < 0 {
		return nil, fmt.Errorf("headers: date thresholds must not be negative")
	}
	if cfg.MaxFuture == 0 {
		cfg.MaxFuture = 24 * time.Hour
	}
	if cfg.MaxPast == 0 {
		cfg.MaxPast = 14 * 24 * time.Hour
	}
	if cfg.MaxReceivedSkew == 0 {
		cfg.MaxReceivedSkew = 48 * time.Hour
	}
	return &DatePolicy{cfg: cfg, now: time.Now}, nil
}

// DateFacts are the observations of the date policy.
type DateFacts struct {
	Missing, Invalid, Multiple bool
	Date                       time.Time
	// Skew is Date minus the time of receipt: positive when the Date is in the future.
	Skew time.Duration
	// ReceivedSkew is Date minus the date of the newest (topmost) Received header that
	// has a parsable date; ReceivedMissing when there is none.
	ReceivedSkew    time.Duration
	ReceivedMissing bool
}

// Dates computes the date facts of a header received at receivedAt.
func Dates(h content.Header, receivedAt time.Time) DateFacts {
	var f DateFacts
	dates := h.Values("Date")
	switch {
	case len(dates) == 0:
		f.Missing = true
	default:
		f.Multiple = len(dates) > 1
		t, err := ParseDate(dates[0])
		if err != nil {
			f.Invalid = true
		} else {
			f.Date = t
			f.Skew = t.Sub(receivedAt)
		}
	}
	f.ReceivedMissing = true
	for _, r := range h.Values("Received") {
		i := strings.LastIndexByte(r, ';')
		if i < 0 {
			continue
		}
		t, err := ParseDate(r[i+1:])
		if err != nil {
			continue
		}
		f.ReceivedMissing = false
		if !f.Date.IsZero() {
			f.ReceivedSkew = f.Date.Sub(t)
		}
		break
	}
	return f
}

// Bounded tells the engine the check needs no watchdog goroutine: date parsing is pure computation on the header.
func (p *DatePolicy) Bounded() bool { return true }

// CheckData reports the date facts. Status fail with reason headers.date_missing,
// headers.date_invalid, headers.date_future, headers.date_past or
// headers.date_received_skew; pass with headers.date_ok.
func (p *DatePolicy) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	if tx == nil || tx.Message == nil {
		return policy.Result{Status: policy.StatusPermError, Reason: "headers.error", Err: fmt.Errorf("headers: no message")}
	}
	raw, err := tx.Message.Bytes()
	if err != nil {
		return policy.Result{Status: policy.StatusPermError, Reason: "headers.error", Err: fmt.Errorf("headers: reading message: %w", err)}
	}
	h, _ := content.ReadHeader(raw, 0)
	at := tx.Message.ReceivedAt
	if at.IsZero() {
		at = p.now()
	}
	return p.result(Dates(h, at))
}

func (p *DatePolicy) result(f DateFacts) policy.Result {
	date := ""
	if !f.Date.IsZero() {
		date = f.Date.Format(time.RFC3339)
	}
	future := !f.Missing && !f.Invalid && f.Skew > p.cfg.MaxFuture
	past := !f.Missing && !f.Invalid && -f.Skew > p.cfg.MaxPast
	rskew := !f.Missing && !f.Invalid && !f.ReceivedMissing &&
		(f.ReceivedSkew > p.cfg.MaxReceivedSkew || -f.ReceivedSkew > p.cfg.MaxReceivedSkew)
	facts := map[string]any{
		"date_missing":          f.Missing,
		"date_invalid":          f.Invalid,
		"date_multiple":         f.Multiple,
		"date":                  date,
		"date_skew":             f.Skew,
		"received_skew":         f.ReceivedSkew,
		"received_missing":      f.ReceivedMissing,
		"date_future":           future,
		"date_past":             past,
		"received_skew_too_big": rskew,
	}
	r := policy.Result{Status: policy.StatusFail, Facts: facts}
	switch {
	case f.Missing:
		r.Reason = "headers.date_missing"
	case f.Invalid:
		r.Reason = "headers.date_invalid"
	case future:
		r.Reason = "headers.date_future"
	case past:
		r.Reason = "headers.date_past"
	case rskew:
		r.Reason = "headers.date_received_skew"
	default:
		r.Status, r.Reason = policy.StatusPass, "headers.date_ok"
	}
	return r
}

// DeclareFacts declares the facts with example values.
func (p *DatePolicy) DeclareFacts() map[string]any {
	return p.result(DateFacts{Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Skew: time.Hour, ReceivedSkew: time.Minute}).Facts
}

// dateLayouts are the forms ParseDate tries after net/mail's RFC 5322 parser: obsolete
// and broken forms seen in real mail (RFC 5322 §4.3 two-digit years, missing seconds,
// named zones, ctime).
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"2 Jan 06 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 06 15:04:05 MST",
	"2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05",
	"Mon, 2 Jan 2006 15:04:05 -0700 MST",
	"Mon, 02-Jan-2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Monday, 2 Jan 2006 15:04:05 -0700",
	"Monday, January 2, 2006 15:04:05 -0700",
	"2006-01-02 15:04:05 -0700",
	time.RFC3339,
}

// ParseDate parses an RFC 5322 date-time (§3.3), falling back to the obsolete and
// broken forms real mail carries. Comments are ignored.
func ParseDate(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	f := strings.Fields(stripComments(s))
	if len(f) > 0 {
		// RFC 5322 §4.3: the obsolete zone names have fixed offsets; Go's parser
		// would take an unknown abbreviation as UTC.
		if off, ok := obsZones[strings.ToUpper(f[len(f)-1])]; ok {
			if l := len(f); l > 1 && len(f[l-2]) == 5 && (f[l-2][0] == '+' || f[l-2][0] == '-') {
				f = f[:l-1] // "-0700 MST": the number wins
			} else {
				f[len(f)-1] = off
			}
		}
	}
	n := strings.TrimSuffix(strings.Join(f, " "), ",")
	// The common form first: net/mail tries many layouts, each failure allocating.
	if t, err := time.Parse("Mon, 2 Jan 2006 15:04:05 -0700", n); err == nil {
		return t, nil
	}
	if t, err := mail.ParseDate(n); err == nil {
		return t, nil
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, n); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("headers: unparsable date %q", clip(s))
}

var obsZones = map[string]string{
	"UT": "+0000", "GMT": "+0000", "UTC": "+0000", "Z": "+0000",
	"EST": "-0500", "EDT": "-0400", "CST": "-0600", "CDT": "-0500",
	"MST": "-0700", "MDT": "-0600", "PST": "-0800", "PDT": "-0700",
}

func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
