package rbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/dnsx"
)

// Client queries DNS lists through a dnsx.Resolver (give it a dnsx.Cache to share answers
// between messages). It is safe for concurrent use.
type Client struct {
	r dnsx.Resolver
	// TXT asks for the TXT record (the list's reason text) of every listed entry.
	TXT bool
}

// NewClient returns a client using r.
func NewClient(r dnsx.Resolver) *Client { return &Client{r: r} }

// Listing is the answer of one list about one subject.
type Listing struct {
	Zone  string       // the list's zone, without the trailing dot
	Name  string       // the DNS name asked
	Codes []netip.Addr // the return codes (A records), sorted; empty when not listed
	TXT   string       // the TXT reason when asked for and listed (records joined by "; ")
}

// Listed reports whether the list returned any code.
func (l Listing) Listed() bool { return len(l.Codes) > 0 }

// ErrRefused is matched (errors.Is) by the error returned when a list answers with a code
// that means it refused or could not serve the query, not that the subject is listed.
var ErrRefused = errors.New("rbl: the list refused the query")

// ErrBadCode is matched by the error returned when a list answers with a code outside
// 127.0.0.0/8 (a misconfigured list, or a resolver that rewrites NXDOMAIN).
var ErrBadCode = errors.New("rbl: return code outside 127.0.0.0/8")

// CodeError is a return code that is not a listing.
type CodeError struct {
	Zone string
	Name string
	Code netip.Addr
	// Temporary is true when the code says "try later" (Spamhaus 127.255.255.255:
	// too many queries).
	Temporary bool
	Kind      error // ErrRefused or ErrBadCode
}

func (e *CodeError) Error() string {
	what := "refused the query"
	if e.Kind == ErrBadCode {
		what = "returned a code outside 127.0.0.0/8"
	}
	return fmt.Sprintf("rbl: %s %s for %s: %s", e.Zone, what, e.Name, e.Code)
}

// Unwrap returns Kind, and dnsx.ErrTemporary for a temporary refusal.
func (e *CodeError) Unwrap() []error {
	if e.Temporary {
		return []error{e.Kind, dnsx.ErrTemporary}
	}
	return []error{e.Kind}
}

// refusalCodes are return codes that lists use for errors, by zone suffix. Spamhaus:
// 127.255.255.252 typo in the list name, .254 query through a public resolver, .255 too
// many queries (https://www.spamhaus.org/faqs/domain-blocklist/). DNSWL.org answers
// 127.0.0.255 when it blocks a resolver; URIBL and SURBL answer 127.0.0.1.
var refusalCodes = []struct {
	suffix string
	code   netip.Prefix
}{
	{"", netip.MustParsePrefix("127.255.255.0/24")},
	{"dnswl.org.", netip.MustParsePrefix("127.0.0.255/32")},
	{"uribl.com.", netip.MustParsePrefix("127.0.0.1/32")},
	{"surbl.org.", netip.MustParsePrefix("127.0.0.1/32")},
}

var loopback8 = netip.MustParsePrefix("127.0.0.0/8")

// checkCode returns an error when code is not a listing of zone.
func checkCode(zone, name string, code netip.Addr) error {
	if !loopback8.Contains(code) {
		return &CodeError{Zone: strings.TrimSuffix(zone, "."), Name: name, Code: code, Kind: ErrBadCode}
	}
	for _, rc := range refusalCodes {
		if rc.code.Contains(code) && (rc.suffix == "" || zone == rc.suffix || strings.HasSuffix(zone, "."+rc.suffix)) {
			return &CodeError{Zone: strings.TrimSuffix(zone, "."), Name: name, Code: code, Kind: ErrRefused,
				Temporary: code == netip.AddrFrom4([4]byte{127, 255, 255, 255})}
		}
	}
	return nil
}

// Lookup asks the DNSBL zone about ip: the reversed octets of an IPv4 address, or the 32
// reversed nibbles of an IPv6 address, under zone (RFC 5782 §2.1, §2.4). An IPv4-mapped
// IPv6 address is looked up as IPv4. Not being listed is not an error.
func (c *Client) Lookup(ctx context.Context, zone string, ip netip.Addr) (Listing, error) {
	if !ip.IsValid() {
		return Listing{}, errors.New("rbl: lookup of an invalid IP address")
	}
	z := dns.Fqdn(strings.ToLower(zone))
	return c.query(ctx, z, dnsx.ReverseLabels(ip)+z)
}

// LookupDomain asks the RHSBL zone about domain (RFC 5782 §2.2): domain.zone. The domain
// is asked as given (lower-cased); reduce it first if the list wants registrable domains.
func (c *Client) LookupDomain(ctx context.Context, zone, domain string) (Listing, error) {
	z := dns.Fqdn(strings.ToLower(zone))
	d := strings.Trim(strings.ToLower(domain), ".")
	if d == "" {
		return Listing{}, errors.New("rbl: lookup of an empty domain")
	}
	return c.query(ctx, z, d+"."+z)
}

// query asks name's A records (and TXT when configured and listed).
func (c *Client) query(ctx context.Context, zone, name string) (Listing, error) {
	l := Listing{Zone: strings.TrimSuffix(zone, "."), Name: name}
	if err := dnsx.CheckName(name); err != nil {
		return l, fmt.Errorf("rbl: %s: %w", zone, err)
	}
	addrs, err := dnsx.LookupA(ctx, c.r, name)
	if err != nil {
		if dnsx.IsNotFound(err) {
			return l, nil // RFC 5782 §2.1: not listed
		}
		return l, fmt.Errorf("rbl: %s: %w", l.Zone, err)
	}
	for _, a := range addrs {
		if err := checkCode(zone, name, a); err != nil {
			return l, err
		}
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	l.Codes = slices.Compact(addrs)
	if c.TXT && l.Listed() {
		txt, err := dnsx.LookupTXT(ctx, c.r, name)
		if err == nil {
			l.TXT = joinTXT(txt)
		}
		// A missing or failing TXT record leaves the listing as it is.
	}
	return l, nil
}

// maxTXT bounds the reason text kept from a list.
const maxTXT = 1024

func joinTXT(txt []string) string {
	s := strings.Join(txt, "; ")
	if len(s) > maxTXT {
		s = s[:maxTXT]
	}
	// Keep it printable: it may end up in an SMTP reply through a rule.
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
