package rbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/policy"
)

// Config configures a DNSBL/DNSWL policy on the client's IP address (the connect stage).
type Config struct {
	// RBL are the blocklists, "zone[=filter][*weight]" (weight 1 by default).
	RBL Specs `yaml:"rbl"`
	// DNSWL are allowlists in the same form (weight -1 by default); a listing makes the
	// status pass and its weight lowers the score. A negative weight in RBL does the same.
	DNSWL Specs `yaml:"dnswl"`
	// TXT asks each list that lists the client for its TXT reason.
	TXT bool `yaml:"txt"`
	// MaxQueries caps the DNS queries of one check (default 20).
	MaxQueries int `yaml:"max_queries"`
	// Timeout bounds all lookups of one check (default 10s); lists that have not answered
	// by then count as temporary errors.
	Timeout time.Duration `yaml:"timeout"`
}

// Deps are what the policies of this package take from the server around them.
type Deps struct {
	// Resolver answers the list queries; give every policy the server's one dnsx.Cache so
	// that they share answers. Required.
	Resolver dnsx.Resolver
}

// Policy is a DNSBL/DNSWL check of the client's IP address, serving the connect stage
// (rules at later stages see its result). Create it with New.
type Policy struct {
	client     *Client
	sites      []Site
	maxQueries int
	timeout    time.Duration
}

var (
	_ policy.ConnectPolicy = (*Policy)(nil)
	_ policy.FactDeclarer  = (*Policy)(nil)
)

// New returns a DNSBL/DNSWL policy.
func New(cfg Config, deps Deps) (*Policy, error) {
	if deps.Resolver == nil {
		return nil, errors.New("rbl: no resolver")
	}
	bl, err1 := ParseSites(cfg.RBL, 1)
	wl, err2 := ParseSites(cfg.DNSWL, -1)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	for _, s := range wl {
		if s.Weight > 0 {
			return nil, fmt.Errorf("rbl: dnswl site %q has a positive weight", s.Spec)
		}
	}
	sites := append(bl, wl...)
	if len(sites) == 0 {
		return nil, errors.New("rbl: no lists configured (rbl or dnswl)")
	}
	p := &Policy{client: NewClient(deps.Resolver), sites: sites, maxQueries: cfg.MaxQueries, timeout: cfg.Timeout}
	p.client.TXT = cfg.TXT
	if err := defaults(&p.maxQueries, &p.timeout, 20); err != nil {
		return nil, err
	}
	return p, nil
}

func defaults(maxQueries *int, timeout *time.Duration, defQueries int) error {
	if *maxQueries < 0 || *timeout < 0 {
		return errors.New("rbl: negative max_queries or timeout")
	}
	if *maxQueries == 0 {
		*maxQueries = defQueries
	}
	if *timeout == 0 {
		*timeout = 10 * time.Second
	}
	return nil
}

// Sites returns the configured lists.
func (p *Policy) Sites() []Site { return slices.Clone(p.sites) }

// CheckConnect looks the client's address up in every list, concurrently.
func (p *Policy) CheckConnect(ctx context.Context, tx *policy.Transaction) policy.Result {
	ip := tx.Conn.IP
	if !ip.IsValid() {
		return policy.Result{Status: policy.StatusNone, Reason: "rbl.no_ip", Facts: emptyFacts()}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	jobs := make([]job, 0, len(p.sites))
	for _, z := range zonesOf(p.sites) {
		jobs = append(jobs, job{zone: z, subject: ip.Unmap().String(), source: "client_ip", ip: ip})
	}
	return evaluate(ctx, p.client, p.sites, jobs, p.maxQueries)
}

// DeclareFacts implements policy.FactDeclarer.
func (p *Policy) DeclareFacts() map[string]any { return declareFacts() }

// job is one DNS list query: a zone and a subject (an IP address or a domain).
type job struct {
	zone    string // fully qualified
	subject string // the IP address or domain, for facts
	source  string // client_ip, helo, sender, client_hostname, from_header, body_urls
	ip      netip.Addr
}

type jobResult struct {
	job
	listing Listing
	err     error
}

// zonesOf returns the distinct zones of sites: several sites on one zone (different
// filters and weights) share one query.
func zonesOf(sites []Site) []string {
	var out []string
	for _, s := range sites {
		if !slices.Contains(out, s.Zone) {
			out = append(out, s.Zone)
		}
	}
	return out
}

// evaluate runs the jobs concurrently (at most maxQueries of them) and turns the answers
// into a policy result.
func evaluate(ctx context.Context, c *Client, sites []Site, jobs []job, maxQueries int) policy.Result {
	capped := 0
	if len(jobs) > maxQueries {
		capped = len(jobs) - maxQueries
		jobs = jobs[:maxQueries]
	}
	results := make([]jobResult, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			var l Listing
			var err error
			if j.ip.IsValid() {
				l, err = c.Lookup(ctx, j.zone, j.ip)
			} else {
				l, err = c.LookupDomain(ctx, j.zone, j.subject)
			}
			results[i] = jobResult{job: j, listing: l, err: err}
		})
	}
	wg.Wait()

	var (
		weight      int
		lists       []string
		codes       []string
		txts        []string
		hits        []map[string]any
		domains     []string
		errs        []error
		errLists    []string
		listed      bool
		allowlisted bool
		temporary   bool
	)
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			errLists = appendUnique(errLists, strings.TrimSuffix(r.zone, "."))
			if dnsx.IsTemporary(r.err) || errors.Is(r.err, context.DeadlineExceeded) {
				temporary = true
			}
			continue
		}
		if !r.listing.Listed() {
			continue
		}
		// Each site on the zone whose filter matches a code adds its weight once.
		for _, s := range sites {
			if s.Zone != r.zone {
				continue
			}
			var matched []string
			for _, code := range r.listing.Codes {
				if s.Match(code) {
					matched = append(matched, code.String())
				}
			}
			if len(matched) == 0 {
				continue
			}
			weight += s.Weight
			if s.Allowlist() {
				allowlisted = true
			} else {
				listed = true
			}
			lists = appendUnique(lists, s.Name())
			for _, m := range matched {
				codes = appendUnique(codes, m)
			}
			if r.listing.TXT != "" {
				txts = appendUnique(txts, r.listing.TXT)
			}
			if r.source != "client_ip" {
				domains = appendUnique(domains, r.subject)
			}
			hits = append(hits, map[string]any{
				"list": s.Name(), "subject": r.subject, "source": r.source,
				"codes": matched, "weight": s.Weight, "txt": r.listing.TXT,
			})
		}
	}
	facts := map[string]any{
		"listed":      listed,
		"allowlisted": allowlisted,
		"lists":       nonNil(lists),
		"codes":       nonNil(codes),
		"weight":      weight,
		"txt":         strings.Join(txts, "; "),
		"hits":        nonNilMaps(hits),
		"domains":     nonNil(domains),
		"errors":      nonNil(errLists),
		"queries":     len(jobs),
		"capped":      capped,
	}
	res := policy.Result{Score: float64(weight), Facts: facts}
	switch {
	case weight > 0:
		res.Status, res.Reason = policy.StatusFail, "rbl.listed"
	case allowlisted:
		// An allowlisting outweighs listings whose weights it exceeds (postscreen's
		// summed score).
		res.Status, res.Reason = policy.StatusPass, "rbl.allowlisted"
	case listed:
		// Listed only by sites of weight 0: informational.
		res.Status, res.Reason = policy.StatusNeutral, "rbl.listed"
	case len(errs) > 0 && temporary:
		res.Status, res.Reason = policy.StatusTempError, "rbl.temperror"
	case len(errs) > 0:
		res.Status, res.Reason = policy.StatusPermError, "rbl.permerror"
	default:
		res.Status, res.Reason = policy.StatusNone, "rbl.not_listed"
	}
	if len(errs) > 0 {
		// Also on a listing, so that the log shows the lists that could not answer.
		res.Err = errors.Join(errs...)
	}
	return res
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMaps(s []map[string]any) []map[string]any {
	if s == nil {
		return []map[string]any{}
	}
	return s
}

func emptyFacts() map[string]any {
	return map[string]any{
		"listed": false, "allowlisted": false, "lists": []string{}, "codes": []string{},
		"weight": 0, "txt": "", "hits": []map[string]any{}, "domains": []string{},
		"errors": []string{}, "queries": 0, "capped": 0,
	}
}

// declareFacts gives an example value of every fact the policies report.
func declareFacts() map[string]any {
	return map[string]any{
		"listed":      true,
		"allowlisted": false,
		"lists":       []string{"zen.spamhaus.org"},
		"codes":       []string{"127.0.0.2"},
		"weight":      3,
		"txt":         "https://www.spamhaus.org/query/ip/192.0.2.1",
		"hits": []map[string]any{{
			"list": "dbl.spamhaus.org", "subject": "example.com", "source": "helo",
			"codes": []string{"127.0.1.2"}, "weight": 1, "txt": "",
		}},
		"domains": []string{"example.com"},
		"errors":  []string{"bl.example.net"},
		"queries": 5,
		"capped":  0,
	}
}
