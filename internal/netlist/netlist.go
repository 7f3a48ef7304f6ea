// Package netlist reads the lists of client networks that configuration keys hold
// (trusted_networks, proxy_from, metrics_from, the doors' and the throttle's exemptions):
// each entry a CIDR ("192.0.2.0/24") or a single address, IPv4-mapped IPv6 read as IPv4.
package netlist

import (
	"fmt"
	"net/netip"
	"strings"
)

// Prefixes parses list; an error names the entry that is neither a CIDR nor an address.
// The prefixes are masked, so that Contains is a plain comparison.
func Prefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q: want a CIDR or an address (%w)", s, err)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q: want a CIDR or an address (%w)", s, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Contains reports whether ip (unmapped first) is in one of ps.
func Contains(ps []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
