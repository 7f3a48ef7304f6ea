// Package spf evaluates Sender Policy Framework records (RFC 7208) over the shared
// dnsx.Resolver: both identities (HELO, §2.3, and MAIL FROM, §2.4), every mechanism and
// modifier, macros (§7), the processing limits of §4.6.4 (10 DNS-querying terms, 10 MX and
// PTR names, 2 void lookups), explanations (§6.2) and the Received-SPF header (§9.1).
//
// Check and CheckHelo are the entry points; CheckHost is the RFC's check_host() function.
// Policy, in policy.go, exposes the checks to portcullis rules.
package spf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/dnsx"
)

// Status is an SPF result (RFC 7208 §2.6).
type Status string

// The SPF results. Their strings match policy.Status.
const (
	None      Status = "none"
	Neutral   Status = "neutral"
	Pass      Status = "pass"
	Fail      Status = "fail"
	SoftFail  Status = "softfail"
	TempError Status = "temperror"
	PermError Status = "permerror"
)

// Identity names the identity checked (RFC 7208 §2.3, §2.4; the "identity" key of
// Received-SPF, §9.1).
type Identity string

// The two identities.
const (
	IdentityMailFrom Identity = "mailfrom"
	IdentityHelo     Identity = "helo"
)

// Result is the outcome of one SPF check.
type Result struct {
	Status Status
	// Explanation is the expanded exp= text of a fail result (§6.2); "" when the record
	// had none or it could not be used.
	Explanation string
	// Mechanism is the directive that matched ("-all", "include:_spf.example.com"),
	// "default" when none did, "" when no record was evaluated.
	Mechanism string
	// Domain is the domain whose record gave the result (after redirects), or the checked
	// domain when there was none.
	Domain string
	// Identity is what was checked, and Sender the identity's full form
	// (postmaster@helo for HELO).
	Identity Identity
	Sender   string
	// Problem says, for temperror and permerror, what went wrong.
	Problem string
	// Lookups is the number of DNS-querying terms evaluated (§4.6.4).
	Lookups int
	// ClientIP, Helo and Receiver are the inputs of the check, kept for Received-SPF.
	ClientIP netip.Addr
	Helo     string
	Receiver string
}

// Limits of RFC 7208 §4.6.4, and of this implementation.
const (
	MaxLookups     = 10   // DNS-querying terms per evaluation
	MaxVoidLookups = 2    // lookups answering NXDOMAIN or no records
	MaxMXNames     = 10   // MX names per mx mechanism
	MaxPTRNames    = 10   // PTR names considered per ptr mechanism or %{p}
	maxRecordLen   = 4096 // an SPF record longer than this is a permerror
	maxDomainLen   = 253
)

// Options tune a check. The zero value is the RFC's defaults.
type Options struct {
	// Receiver is our host name, used in %{r} and in Received-SPF ("unknown" if empty).
	Receiver string
	// Timeout bounds the whole check (all DNS queries) when the context has no earlier
	// deadline. Zero means 20 s, the RFC's recommended minimum (§4.6.4).
	Timeout time.Duration
	// Now is the clock for %{t}; nil means time.Now.
	Now func() time.Time
	// VoidLimit overrides MaxVoidLookups when > 0.
	VoidLimit int
}

// Option changes Options.
type Option func(*Options)

// WithReceiver sets the receiving host name (%{r}, Received-SPF receiver=).
func WithReceiver(host string) Option { return func(o *Options) { o.Receiver = host } }

// WithTimeout bounds the whole evaluation.
func WithTimeout(d time.Duration) Option { return func(o *Options) { o.Timeout = d } }

// WithClock sets the clock used by %{t}.
func WithClock(now func() time.Time) Option { return func(o *Options) { o.Now = now } }

// Check evaluates the MAIL FROM identity (RFC 7208 §2.4): the domain of sender, or, for the
// null reverse-path (sender ""), postmaster@helo.
func Check(ctx context.Context, r dnsx.Resolver, ip netip.Addr, helo, sender string, opts ...Option) (Result, error) {
	if sender == "" {
		return CheckHelo(ctx, r, ip, helo, opts...)
	}
	domain := sender
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		domain = sender[at+1:]
	}
	res, err := CheckHost(ctx, r, ip, domain, sender, helo, opts...)
	res.Identity = IdentityMailFrom
	return res, err
}

// CheckHelo evaluates the HELO identity (RFC 7208 §2.3): the sender is postmaster@helo.
func CheckHelo(ctx context.Context, r dnsx.Resolver, ip netip.Addr, helo string, opts ...Option) (Result, error) {
	res, err := CheckHost(ctx, r, ip, helo, "postmaster@"+helo, helo, opts...)
	res.Identity = IdentityHelo
	return res, err
}

// CheckHost is check_host() of RFC 7208 §4: the SPF result of domain for a message from ip
// with the given sender and HELO name. The error is non-nil exactly for temperror and
// permerror and says what failed.
func CheckHost(ctx context.Context, r dnsx.Resolver, ip netip.Addr, domain, sender, helo string, opts ...Option) (Result, error) {
	var o Options
	for _, f := range opts {
		f(&o)
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Receiver == "" {
		o.Receiver = "unknown"
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	domain = strings.TrimSuffix(domain, ".")
	local, sdomain := splitSender(sender, domain)
	e := &evaluator{
		ctx: ctx, r: r, ip: ip.Unmap(), opts: &o,
		sender: local + "@" + sdomain, local: local, senderDomain: sdomain, helo: helo,
		voidLimit: MaxVoidLookups,
	}
	if o.VoidLimit > 0 {
		e.voidLimit = o.VoidLimit
	}
	res := Result{Domain: domain, Sender: e.sender, ClientIP: e.ip, Helo: helo, Receiver: o.Receiver}
	if !ip.IsValid() {
		res.Status, res.Problem = PermError, "no client IP address"
		return res, fmt.Errorf("spf: check %s: %w", domain, errors.New(res.Problem))
	}
	st, info, err := e.checkHost(domain)
	res.Status = st
	res.Lookups = e.lookups
	if info != nil {
		res.Mechanism, res.Explanation, res.Domain = info.mechanism, info.explanation, info.domain
	}
	if err != nil {
		res.Problem = err.Error()
		return res, fmt.Errorf("spf: check %s for %s: %w", domain, ip, err)
	}
	return res, nil
}

// splitSender returns the local part and domain of sender; a missing local part is
// "postmaster" (§4.3) and a missing domain is fallback.
func splitSender(sender, fallback string) (local, domain string) {
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return "postmaster", fallback
	}
	local, domain = sender[:at], sender[at+1:]
	if local == "" {
		local = "postmaster"
	}
	if domain == "" {
		domain = fallback
	}
	return local, strings.TrimSuffix(domain, ".")
}

// validDomain reports whether d may be queried: multi-label, no empty labels, labels of at
// most 63 octets, at most 253 octets in all (§4.3, RFC 1035 §2.3.4).
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > maxDomainLen || !strings.Contains(d, ".") || d[0] == '[' {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}
