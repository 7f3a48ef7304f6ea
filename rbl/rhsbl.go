package rbl

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/policy"
)

// The subjects an RHSBL policy can look up, and the stage at which each is known.
const (
	SourceClientHostname = "client_hostname" // the client's FCrDNS name (connect)
	SourceHelo           = "helo"            // the HELO/EHLO name (helo)
	SourceSender         = "sender"          // the MAIL FROM domain (mail)
	SourceFromHeader     = "from_header"     // the From: header domains (data)
	SourceBodyURLs       = "body_urls"       // the registrable domains of URLs in the body (data)
)

var sourceStage = map[string]policy.Stage{
	SourceClientHostname: policy.StageConnect,
	SourceHelo:           policy.StageHelo,
	SourceSender:         policy.StageMail,
	SourceFromHeader:     policy.StageData,
	SourceBodyURLs:       policy.StageData,
}

// sourceOrder is the order in which subjects are queued, so that the query cap drops the
// least reliable (URL) subjects first.
var sourceOrder = []string{SourceClientHostname, SourceHelo, SourceSender, SourceFromHeader, SourceBodyURLs}

// RHSBLConfig configures a domain-list (RHSBL) policy.
type RHSBLConfig struct {
	// RHSBL are the domain lists, "zone[=filter][*weight]" (weight 1 by default; a
	// negative weight makes an allowlist such as dwl.dnswl.org).
	RHSBL Specs `yaml:"rhsbl"`
	// On lists the subjects to look up: client_hostname, helo, sender, from_header,
	// body_urls (default: helo, sender, client_hostname).
	On []string `yaml:"on"`
	// Registrable reduces every domain to its registrable domain (public suffix plus one
	// label) before the lookup; URL domains always are.
	Registrable bool `yaml:"registrable"`
	// TXT asks each list that lists a domain for its TXT reason.
	TXT bool `yaml:"txt"`
	// MaxQueries caps the DNS queries of one check, that is of one message at the data
	// stage (default 50). Subjects are queued client_hostname, helo, sender, from_header,
	// then body URLs, so URLs are dropped first.
	MaxQueries int `yaml:"max_queries"`
	// MaxURLDomains caps the URL domains taken from one message (default 20).
	MaxURLDomains int `yaml:"max_url_domains"`
	// Timeout bounds all lookups of one check (default 10s).
	Timeout time.Duration `yaml:"timeout"`
}

// RHSBL is a domain-list policy. It serves the stages of its subjects; the result at a
// stage covers every subject known by then (the data-stage result includes the HELO name),
// so a rule sees all findings whichever stage it runs at. Create it with NewRHSBL.
type RHSBL struct {
	client *Client
	sites  []Site
	on     []string
	cfg    RHSBLConfig
	stages []policy.Stage
}

var (
	_ policy.ConnectPolicy = (*RHSBL)(nil)
	_ policy.HeloPolicy    = (*RHSBL)(nil)
	_ policy.MailPolicy    = (*RHSBL)(nil)
	_ policy.DataPolicy    = (*RHSBL)(nil)
	_ policy.FactDeclarer  = (*RHSBL)(nil)
)

// NewRHSBL returns a domain-list policy.
func NewRHSBL(cfg RHSBLConfig, deps Deps) (*RHSBL, error) {
	if deps.Resolver == nil {
		return nil, errors.New("rbl: no resolver")
	}
	sites, err := ParseSites(cfg.RHSBL, 1)
	if err != nil {
		return nil, err
	}
	if len(sites) == 0 {
		return nil, errors.New("rbl: no rhsbl lists configured")
	}
	on := cfg.On
	if len(on) == 0 {
		on = []string{SourceHelo, SourceSender, SourceClientHostname}
	}
	p := &RHSBL{client: NewClient(deps.Resolver), sites: sites, cfg: cfg}
	for _, src := range sourceOrder {
		if slices.Contains(on, src) {
			p.on = append(p.on, src)
			if st := sourceStage[src]; !slices.Contains(p.stages, st) {
				p.stages = append(p.stages, st)
			}
		}
	}
	for _, src := range on {
		if _, ok := sourceStage[src]; !ok {
			return nil, fmt.Errorf("rbl: unknown rhsbl subject %q (want client_hostname, helo, sender, from_header or body_urls)", src)
		}
	}
	slices.Sort(p.stages)
	if err := defaults(&p.cfg.MaxQueries, &p.cfg.Timeout, 50); err != nil {
		return nil, err
	}
	if p.cfg.MaxURLDomains <= 0 {
		p.cfg.MaxURLDomains = defaultMaxURLDomains
	}
	p.client.TXT = cfg.TXT
	return p, nil
}

// Stages reports the stages of the configured subjects (policy.Serves uses it).
func (p *RHSBL) Stages() []policy.Stage { return slices.Clone(p.stages) }

// CheckConnect looks up the client's host name.
func (p *RHSBL) CheckConnect(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(ctx, tx, policy.StageConnect)
}

// CheckHelo looks up the HELO name (and the subjects of the connect stage).
func (p *RHSBL) CheckHelo(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(ctx, tx, policy.StageHelo)
}

// CheckMail looks up the sender's domain (and the subjects of earlier stages).
func (p *RHSBL) CheckMail(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(ctx, tx, policy.StageMail)
}

// CheckData looks up the From: header's domains and the body's URL domains (and the
// subjects of earlier stages).
func (p *RHSBL) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	return p.check(ctx, tx, policy.StageData)
}

// DeclareFacts implements policy.FactDeclarer.
func (p *RHSBL) DeclareFacts() map[string]any { return declareFacts() }

func (p *RHSBL) check(ctx context.Context, tx *policy.Transaction, stage policy.Stage) policy.Result {
	subjects := p.Subjects(tx, stage)
	if len(subjects) == 0 {
		return policy.Result{Status: policy.StatusNone, Reason: "rbl.no_domain", Facts: emptyFacts()}
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	zones := zonesOf(p.sites)
	jobs := make([]job, 0, len(subjects)*len(zones))
	for _, s := range subjects {
		for _, z := range zones {
			jobs = append(jobs, job{zone: z, subject: s.Domain, source: s.Source})
		}
	}
	return evaluate(ctx, p.client, p.sites, jobs, p.cfg.MaxQueries)
}

// Subject is one domain to look up and where it came from.
type Subject struct {
	Domain string
	Source string // one of the Source constants
}

// Subjects returns the domains the policy looks up at stage: those of the configured
// subjects known by then, without duplicates (a domain found twice keeps its first
// source).
func (p *RHSBL) Subjects(tx *policy.Transaction, stage policy.Stage) []Subject {
	var out []Subject
	add := func(src, d string) {
		d = asciiDomain(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), "."))
		if p.cfg.Registrable && src != SourceBodyURLs {
			d = registrable(d)
		}
		if !isLookupDomain(d) {
			return
		}
		for _, s := range out {
			if s.Domain == d {
				return
			}
		}
		out = append(out, Subject{Domain: d, Source: src})
	}
	for _, src := range p.on {
		if sourceStage[src] > stage {
			continue
		}
		switch src {
		case SourceClientHostname:
			add(src, tx.Conn.Hostname)
		case SourceHelo:
			add(src, tx.Conn.HELO)
		case SourceSender:
			if !tx.Envelope.From.IsNull() {
				add(src, tx.Envelope.From.Domain)
			}
		case SourceFromHeader:
			if tx.Message != nil {
				for _, d := range fromDomains(tx.Message.Header.Get("From")) {
					add(src, d)
				}
			}
		case SourceBodyURLs:
			if tx.Message != nil {
				// The URLs come from the content package's walk of the message, made
				// once per message and shared with every policy that asks.
				if m, err := content.Parse(tx.Message); err == nil {
					var ds []string
					for _, h := range m.URLHosts {
						if d := registrable(h); d != "" && !contains(ds, d) {
							ds = append(ds, d)
							if len(ds) >= p.cfg.MaxURLDomains {
								break
							}
						}
					}
					for _, d := range ds {
						add(src, d)
					}
				}
			}
		}
	}
	return out
}

// isLookupDomain reports whether d is worth an RHSBL query: a domain name with at least
// two labels, not an address literal.
func isLookupDomain(d string) bool {
	if d == "" || strings.HasPrefix(d, "[") {
		return false
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return false
	}
	return validDomain(d)
}

// maxFromAddrs bounds the addresses taken from one From: header.
const maxFromAddrs = 5

// fromDomains returns the domains of the addresses of a From: header field value.
func fromDomains(v string) []string {
	if v == "" {
		return nil
	}
	if len(v) > 4096 {
		v = v[:4096]
	}
	var out []string
	if list, err := mail.ParseAddressList(v); err == nil {
		for _, a := range list {
			if d := address.Domain(a.Address); d != "" && len(out) < maxFromAddrs {
				out = append(out, d)
			}
		}
		return out
	}
	// Malformed headers are common in spam: take the domain after the last '@'.
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		return nil
	}
	d := v[at+1:]
	if end := strings.IndexAny(d, "> \t\r\n,;\"()"); end >= 0 {
		d = d[:end]
	}
	return []string{d}
}
