package main

import (
	"net"
	"net/http"
	"net/netip"

	"github.com/portcullis-mail/portcullis/internal/netlist"
)

// fromNetworks lets through only the requests whose client address is in one of nets
// (checked at load); others get 403. It guards /metrics and /debug/pprof/, which share
// the listener with the web page: a page listening beyond loopback must not publish them.
func fromNetworks(nets []string, h http.Handler) http.Handler {
	prefixes, _ := netlist.Prefixes(nets) // config.Load refused a bad entry
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && netlist.Contains(prefixes, ip) {
				h.ServeHTTP(w, r)
				return
			}
		}
		http.Error(w, "forbidden: not in http.metrics_from", http.StatusForbidden)
	})
}
