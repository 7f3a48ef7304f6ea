package rbl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"
)

// Site is one list entry in the syntax of Postfix's postscreen_dnsbl_sites:
//
//	zone[=filter][*weight]
//
// zone is the list's DNS zone. filter restricts the return codes that count as a listing,
// one pattern per octet of the A record: a number, a range [2..11], a list [2;4;6], or a
// mix [1;3..5]; without a filter any code in 127.0.0.0/8 counts. weight (default 1, or -1
// for an allowlist) is added to the score when the site lists the subject; a negative
// weight marks an allowlist (DNSWL).
//
//	zen.spamhaus.org=127.0.0.[2..11]*3
//	list.dnswl.org=127.0.[0..255].[1..3]*-5
//	bl.spamcop.net
type Site struct {
	Spec   string       // the entry as written
	Zone   string       // fully qualified, lower case
	Filter *[4]octetSet // nil: any code
	Weight int
}

// octetSet is the set of allowed values of one octet.
type octetSet [4]uint64

func (s *octetSet) add(lo, hi int) {
	for v := lo; v <= hi; v++ {
		s[v>>6] |= 1 << (v & 63)
	}
}

func (s *octetSet) has(v byte) bool { return s[v>>6]&(1<<(v&63)) != 0 }

// Limits on a site spec (it comes from the admin's config, but a typo must give an error,
// not a surprise).
const maxSpecLen = 512

// ParseSite parses one site entry. defWeight is the weight when none is given (1 for a
// blocklist, -1 for an allowlist).
func ParseSite(spec string, defWeight int) (Site, error) {
	s := Site{Spec: spec, Weight: defWeight}
	if len(spec) > maxSpecLen {
		return s, fmt.Errorf("rbl: site %.40q...: longer than %d characters", spec, maxSpecLen)
	}
	rest := strings.TrimSpace(spec)
	if i := strings.LastIndexByte(rest, '*'); i >= 0 {
		w, err := strconv.Atoi(rest[i+1:])
		if err != nil || w < -1000 || w > 1000 {
			return s, fmt.Errorf("rbl: site %q: weight %q is not an integer in [-1000, 1000]", spec, rest[i+1:])
		}
		s.Weight, rest = w, rest[:i]
	}
	zone, filter, hasFilter := strings.Cut(rest, "=")
	zone = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(zone), "."))
	if zone == "" || strings.ContainsAny(zone, " \t*=[]") || !strings.Contains(zone, ".") {
		return s, fmt.Errorf("rbl: site %q: %q is not a DNS zone", spec, zone)
	}
	if _, ok := dns.IsDomainName(zone); !ok {
		return s, fmt.Errorf("rbl: site %q: %q is not a DNS zone", spec, zone)
	}
	s.Zone = zone + "."
	if hasFilter {
		f, err := parseFilter(strings.TrimSpace(filter))
		if err != nil {
			return s, fmt.Errorf("rbl: site %q: %w", spec, err)
		}
		s.Filter = f
	}
	return s, nil
}

// parseFilter parses d.d.d.d where each d is a number or a bracketed list of numbers and
// ranges.
func parseFilter(f string) (*[4]octetSet, error) {
	var out [4]octetSet
	parts := splitOctets(f)
	if len(parts) != 4 {
		return nil, fmt.Errorf("filter %q does not have four octets", f)
	}
	for i, p := range parts {
		if strings.HasPrefix(p, "[") && strings.HasSuffix(p, "]") {
			items := strings.Split(p[1:len(p)-1], ";")
			for _, it := range items {
				lo, hi, isRange := strings.Cut(it, "..")
				a, err := octet(lo)
				if err != nil {
					return nil, fmt.Errorf("filter %q: %w", f, err)
				}
				b := a
				if isRange {
					if b, err = octet(hi); err != nil {
						return nil, fmt.Errorf("filter %q: %w", f, err)
					}
					if b < a {
						return nil, fmt.Errorf("filter %q: empty range %s", f, it)
					}
				}
				out[i].add(a, b)
			}
			continue
		}
		v, err := octet(p)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w", f, err)
		}
		out[i].add(v, v)
	}
	return &out, nil
}

// splitOctets splits a filter at the dots outside brackets.
func splitOctets(f string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				parts = append(parts, f[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, f[start:])
}

func octet(s string) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 0 || v > 255 || s == "" {
		return 0, fmt.Errorf("%q is not an octet (0-255)", s)
	}
	return v, nil
}

// Match reports whether the return code matches the site's filter.
func (s Site) Match(code netip.Addr) bool {
	if !code.Is4() {
		return false
	}
	if s.Filter == nil {
		return true
	}
	b := code.As4()
	for i := range 4 {
		if !s.Filter[i].has(b[i]) {
			return false
		}
	}
	return true
}

// Allowlist reports whether the site is an allowlist (negative weight).
func (s Site) Allowlist() bool { return s.Weight < 0 }

// Name is the zone without its trailing dot, as shown in facts and logs.
func (s Site) Name() string { return strings.TrimSuffix(s.Zone, ".") }

// ParseSites parses a list of entries with the same default weight.
func ParseSites(specs []string, defWeight int) ([]Site, error) {
	out := make([]Site, 0, len(specs))
	var errs []error
	for _, sp := range specs {
		s, err := ParseSite(sp, defWeight)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// Specs is a list of site entries that also decodes from a single YAML string, so that
// both `rbl: zen.spamhaus.org` and `rbl: [zen.spamhaus.org, bl.spamcop.net]` work.
type Specs []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Specs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "" {
			*s = nil
			return nil
		}
		*s = Specs{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return fmt.Errorf("rbl: list of sites: %w", err)
	}
	*s = list
	return nil
}
