package dkim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/miekg/dns"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/portcullis-mail/portcullis/dnsx"
)

// DMARC results (RFC 7489 §11.2 / RFC 8601).
const (
	DMARCPass      = "pass"
	DMARCFail      = "fail"
	DMARCNone      = "none" // no DMARC record
	DMARCTempError = "temperror"
	DMARCPermError = "permerror"
)

// Record is a DMARC record and where it was found.
type Record struct {
	*dmarc.Record
	// Domain is the domain whose _dmarc record applies: the From: domain or its
	// organizational domain.
	Domain string
}

// OrgDomain returns the organizational domain of d (RFC 7489 §3.2): the registrable
// domain by the public suffix list, or d itself when it has none.
func OrgDomain(d string) string {
	d = normDomain(d)
	if org, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return org
	}
	return d
}

// Aligned reports whether two domains are aligned (RFC 7489 §3.1): equal in strict mode,
// sharing their organizational domain in relaxed mode.
func Aligned(a, b string, strict bool) bool {
	a, b = normDomain(a), normDomain(b)
	if a == "" || b == "" {
		return false
	}
	if strict {
		return a == b
	}
	return OrgDomain(a) == OrgDomain(b)
}

// normDomain lower-cases d, drops a trailing dot and turns U-labels into A-labels, so
// that an internationalized From: domain compares with the ASCII d= of a signature.
func normDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(d); err == nil {
				return a
			}
			return d
		}
	}
	return d
}

// ErrNoRecord means neither the From: domain nor its organizational domain publishes a
// DMARC record.
var ErrNoRecord = errors.New("dmarc: no record")

// LookupDMARC finds the DMARC record for fromDomain: at _dmarc.fromDomain, then at the
// organizational domain (RFC 7489 §6.6.3). It returns ErrNoRecord when there is none, an
// error matching dnsx.ErrTemporary on a temporary DNS failure, and another error for a
// record that does not parse.
func LookupDMARC(ctx context.Context, r dnsx.Resolver, fromDomain string) (*Record, error) {
	from := strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	// An internationalized From: domain is looked up by its A-labels.
	if a, err := idna.Lookup.ToASCII(from); err == nil {
		from = a
	} else {
		return nil, fmt.Errorf("%w: invalid domain %q: %v", ErrNoRecord, fromDomain, err)
	}
	rec, err := lookupDMARCAt(ctx, r, from)
	if !errors.Is(err, ErrNoRecord) {
		return rec, err
	}
	if org := OrgDomain(from); org != from {
		return lookupDMARCAt(ctx, r, org)
	}
	return nil, err
}

func lookupDMARCAt(ctx context.Context, r dnsx.Resolver, domain string) (*Record, error) {
	name := "_dmarc." + domain
	if !ldhName(name) {
		return nil, fmt.Errorf("%w: invalid domain %q", ErrNoRecord, domain)
	}
	ans, err := r.Query(ctx, dns.Fqdn(name), dns.TypeTXT)
	if err != nil {
		if dnsx.IsNotFound(err) {
			return nil, ErrNoRecord
		}
		return nil, fmt.Errorf("dmarc: TXT %s: %w", name, err)
	}
	_, rrs := ans.Chain()
	var recs []string
	for _, rr := range rrs {
		t, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		s := dnsx.TXTData(t)
		// RFC 7489 §6.6.3: records not starting with "v=DMARC1" are discarded.
		if v, _, _ := strings.Cut(s, ";"); strings.TrimSpace(v) == "v=DMARC1" {
			recs = append(recs, s)
		}
	}
	switch len(recs) {
	case 0:
		return nil, ErrNoRecord
	case 1:
	default:
		// More than one record: no DMARC processing (§6.6.3).
		return nil, fmt.Errorf("%w: %s has %d DMARC records", ErrNoRecord, name, len(recs))
	}
	rec, err := dmarc.Parse(recs[0])
	if err != nil {
		return nil, fmt.Errorf("dmarc: record at %s: %w", name, err)
	}
	return &Record{Record: rec, Domain: domain}, nil
}

// Evaluation is the DMARC outcome for one message.
type Evaluation struct {
	Result      string // DMARCPass, DMARCFail, DMARCNone, DMARCTempError, DMARCPermError
	FromDomain  string
	OrgDomain   string
	AlignedSPF  bool
	AlignedDKIM bool
	// RecordPolicy is the policy the record asks for this From: domain (p, or sp for a
	// subdomain of the organizational domain); Policy is what applies to this message
	// after pct sampling (§6.6.4): "none", "quarantine" or "reject"; "" without a record.
	RecordPolicy string
	Policy       string
	Percent      int
	// Sampled is false when pct excluded this message from the policy.
	Sampled bool
}

// Input is what DMARC evaluation needs from the transaction.
type Input struct {
	FromDomain string // the RFC5322.From domain
	// SPFDomain is the domain SPF checked (MAIL FROM domain, or HELO for the null sender)
	// and SPFResult its result ("pass", "fail", ...).
	SPFDomain string
	SPFResult string
	// DKIMPassDomains are the d= domains of the signatures that passed.
	DKIMPassDomains []string
	// SampleKey picks the pct sample deterministically (the Message-ID, say).
	SampleKey string
}

// Evaluate applies rec to in (RFC 7489 §6.6). rec may be nil (no record: none).
func Evaluate(rec *Record, in Input) Evaluation {
	from := strings.ToLower(strings.TrimSuffix(in.FromDomain, "."))
	ev := Evaluation{FromDomain: from, OrgDomain: OrgDomain(from), Result: DMARCNone, Percent: 100, Sampled: true}
	if rec == nil || rec.Record == nil {
		ev.AlignedSPF, ev.AlignedDKIM = alignments(in, false, false)
		return ev
	}
	ev.AlignedSPF, ev.AlignedDKIM = alignments(in,
		rec.SPFAlignment == dmarc.AlignmentStrict, rec.DKIMAlignment == dmarc.AlignmentStrict)
	ev.Result = DMARCFail
	if ev.AlignedSPF || ev.AlignedDKIM {
		ev.Result = DMARCPass
	}
	p := rec.Policy
	// §6.3 sp: applies when the record was found at the organizational domain for a
	// subdomain From:.
	if from != rec.Domain && rec.SubdomainPolicy != "" {
		p = rec.SubdomainPolicy
	}
	ev.RecordPolicy = string(p)
	ev.Policy = ev.RecordPolicy
	if rec.Percent != nil {
		ev.Percent = *rec.Percent
	}
	if ev.Percent < 100 {
		h := fnv.New32a()
		h.Write([]byte(in.SampleKey))
		ev.Sampled = int(h.Sum32()%100) < ev.Percent
		if !ev.Sampled {
			// §6.6.4: a message outside the sample gets the next less strict policy.
			switch ev.Policy {
			case "reject":
				ev.Policy = "quarantine"
			case "quarantine":
				ev.Policy = "none"
			}
		}
	}
	return ev
}

func alignments(in Input, strictSPF, strictDKIM bool) (spf, dkim bool) {
	spf = in.SPFResult == "pass" && Aligned(in.SPFDomain, in.FromDomain, strictSPF)
	for _, d := range in.DKIMPassDomains {
		if Aligned(d, in.FromDomain, strictDKIM) {
			dkim = true
		}
	}
	return spf, dkim
}
