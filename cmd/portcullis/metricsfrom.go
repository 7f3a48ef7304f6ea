package main

import (
	"net"
	"net/http"
	"net/netip"
)

// fromNetworks lets through only the requests whose client address is in one of nets
// (CIDRs or addresses, checked at load); others get 403. It guards /metrics and
// /debug/pprof/, which share the listener with the web page: a page listening beyond
// loopback must not publish them.
func fromNetworks(nets []string, h http.Handler) http.Handler {
	var prefixes []netip.Prefix
	for _, n := range nets {
		if p, err := netip.ParsePrefix(n); err == nil {
			prefixes = append(prefixes, p.Masked())
		} else if a, err := netip.ParseAddr(n); err == nil {
			prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err == nil {
			if ip, err := netip.ParseAddr(host); err == nil {
				ip = ip.Unmap()
				for _, p := range prefixes {
					if p.Contains(ip) {
						h.ServeHTTP(w, r)
						return
					}
				}
			}
		}
		http.Error(w, "forbidden: not in http.metrics_from", http.StatusForbidden)
	})
}
