package dnsx

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Limits on what the typed lookups return, against hostile zones.
const (
	// MaxPTRNames is how many PTR names ForwardConfirmed tries (RFC 7208 §4.6.4 uses the
	// same bound of 10 for the SPF ptr mechanism).
	MaxPTRNames = 10
)

// LookupTXT returns the TXT records of name, each record's character-strings concatenated
// (RFC 7208 §3.3). NODATA gives an empty list and a nil error.
func LookupTXT(ctx context.Context, r Resolver, name string) ([]string, error) {
	return lookupAs(ctx, r, name, dns.TypeTXT, func(t *dns.TXT) (string, bool) { return TXTData(t), true })
}

// TXTData returns the character-strings of a TXT record joined, as the bytes on the wire:
// miekg/dns keeps them in presentation form (\DDD for bytes outside printable ASCII, \"
// and \\), which would let a non-ASCII or control byte in an SPF or DKIM record pass as text.
func TXTData(t *dns.TXT) string {
	s := strings.Join(t.Txt, "")
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		i++
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// LookupA returns the IPv4 addresses of name.
func LookupA(ctx context.Context, r Resolver, name string) ([]netip.Addr, error) {
	return lookupAs(ctx, r, name, dns.TypeA, func(a *dns.A) (netip.Addr, bool) { return netip.AddrFromSlice(a.A.To4()) })
}

// LookupAAAA returns the IPv6 addresses of name.
func LookupAAAA(ctx context.Context, r Resolver, name string) ([]netip.Addr, error) {
	return lookupAs(ctx, r, name, dns.TypeAAAA, func(a *dns.AAAA) (netip.Addr, bool) { return netip.AddrFromSlice(a.AAAA.To16()) })
}

// LookupIP returns the IPv4 and IPv6 addresses of name, asking both types concurrently.
// When one of the two queries fails and the other does not, it returns the addresses it has
// and the error; NXDOMAIN from either is NXDOMAIN.
func LookupIP(ctx context.Context, r Resolver, name string) ([]netip.Addr, error) {
	var (
		wg   sync.WaitGroup
		v6   []netip.Addr
		err6 error
	)
	ctx6, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { v6, err6 = LookupAAAA(ctx6, r, name) })
	v4, err4 := LookupA(ctx, r, name)
	if IsNotFound(err4) {
		cancel() // the other answer cannot differ
		wg.Wait()
		return nil, err4
	}
	wg.Wait()
	if IsNotFound(err6) {
		return nil, err6
	}
	return append(v4, v6...), errors.Join(err4, err6)
}

// MX is one mail exchanger.
type MX struct {
	Host string // lower case, without the trailing dot; "" for a null MX (RFC 7505)
	Pref uint16
}

// LookupMX returns the MX records of name sorted by preference (RFC 5321 §5.1), ties in
// the order received.
func LookupMX(ctx context.Context, r Resolver, name string) ([]MX, error) {
	out, err := lookupAs(ctx, r, name, dns.TypeMX, func(m *dns.MX) (MX, bool) { return MX{Host: hostname(m.Mx), Pref: m.Preference}, true })
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupPTR returns the PTR names of ip (lower case, without the trailing dot).
func LookupPTR(ctx context.Context, r Resolver, ip netip.Addr) ([]string, error) {
	if !ip.IsValid() {
		return nil, errors.New("dnsx: PTR lookup of an invalid address")
	}
	rrs, err := lookup(ctx, r, ReverseName(ip), dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			if h := hostname(p.Ptr); h != "" && !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out, nil
}

// ReverseName returns the reverse-mapping name of ip: "4.3.2.1.in-addr.arpa." for 1.2.3.4
// (RFC 1035 §3.5) and the 32 nibbles under ip6.arpa. for IPv6 (RFC 3596 §2.5). An
// IPv4-mapped IPv6 address is treated as IPv4.
func ReverseName(ip netip.Addr) string {
	return ReverseLabels(ip) + reverseZone(ip)
}

func reverseZone(ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return "in-addr.arpa."
	}
	return "ip6.arpa."
}

// ReverseLabels returns the reversed labels of ip with a trailing dot and no zone: "4.3.2.1."
// for 1.2.3.4 and 32 dot-separated nibbles for IPv6. DNSBL names are these labels followed
// by the list's zone.
func ReverseLabels(ip netip.Addr) string {
	ip = ip.Unmap()
	const hexd = "0123456789abcdef"
	if ip.Is4() {
		b := ip.As4()
		var sb strings.Builder
		sb.Grow(16)
		for i := 3; i >= 0; i-- {
			fmt.Fprintf(&sb, "%d.", b[i])
		}
		return sb.String()
	}
	b := ip.As16()
	buf := make([]byte, 0, 64)
	for i := 15; i >= 0; i-- {
		buf = append(buf, hexd[b[i]&0xf], '.', hexd[b[i]>>4], '.')
	}
	return string(buf)
}

// ForwardConfirmed does forward-confirmed reverse DNS (FCrDNS, RFC 8601 §3 "iprev"): it
// looks up the PTR names of ip and returns the first one, in answer order, whose A or AAAA
// records include ip. ptrs holds every PTR name (at most MaxPTRNames are checked).
//
// A missing PTR record or a name that does not confirm is not an error (hostname is "").
// err is non-nil, matching ErrTemporary, only when a lookup failed temporarily and no name
// was confirmed, so that the caller can tell "no name" from "could not tell".
func ForwardConfirmed(ctx context.Context, r Resolver, ip netip.Addr) (hostname string, ptrs []string, err error) {
	ip = ip.Unmap()
	ptrs, err = LookupPTR(ctx, r, ip)
	if err != nil {
		if IsNotFound(err) || !IsTemporary(err) {
			return "", nil, nil
		}
		return "", nil, fmt.Errorf("dnsx: FCrDNS of %s: %w", ip, err)
	}
	check := ptrs
	if len(check) > MaxPTRNames {
		check = check[:MaxPTRNames]
	}
	qtype := dns.TypeA
	if ip.Is6() {
		qtype = dns.TypeAAAA
	}
	type res struct {
		ok  bool
		err error
	}
	results := make([]res, len(check))
	var wg sync.WaitGroup
	for i, name := range check {
		wg.Go(func() {
			var addrs []netip.Addr
			var err error
			if qtype == dns.TypeA {
				addrs, err = LookupA(ctx, r, name)
			} else {
				addrs, err = LookupAAAA(ctx, r, name)
			}
			results[i] = res{ok: slices.Contains(addrs, ip), err: err}
		})
	}
	wg.Wait()
	var temp error
	for i, res := range results {
		if res.ok {
			return check[i], ptrs, nil
		}
		if temp == nil && IsTemporary(res.err) {
			temp = res.err
		}
	}
	if temp != nil {
		return "", ptrs, fmt.Errorf("dnsx: FCrDNS of %s: %w", ip, temp)
	}
	return "", ptrs, nil
}

// lookup queries name and returns the records of qtype along the CNAME chain.
func lookup(ctx context.Context, r Resolver, name string, qtype uint16) ([]dns.RR, error) {
	ans, err := r.Query(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	_, rrs := ans.Chain()
	return rrs, nil
}

// lookupAs queries name for qtype and returns what conv makes of each record of type R
// along the CNAME chain, skipping those it reports false for.
func lookupAs[R dns.RR, T any](ctx context.Context, r Resolver, name string, qtype uint16, conv func(R) (T, bool)) ([]T, error) {
	rrs, err := lookup(ctx, r, name, qtype)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(rrs))
	for _, rr := range rrs {
		if rec, ok := rr.(R); ok {
			if v, ok := conv(rec); ok {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// hostname lower-cases a DNS name and drops the trailing dot.
func hostname(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
