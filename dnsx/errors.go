package dnsx

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// QueryError describes a failed query. It matches ErrNXDomain, ErrTemporary or
// ErrMalformed (through errors.Is) according to Kind, and the underlying cause, if any.
type QueryError struct {
	Name   string // the question name, fully qualified
	Type   uint16 // the question type
	Server string // the server that gave the deciding answer, "" when none did
	// Rcode is the response code of the deciding answer, -1 when no server answered.
	Rcode int
	// SOA is the authority section's SOA of an NXDOMAIN answer, used for negative caching
	// (RFC 2308 §5); nil when the server sent none.
	SOA *dns.SOA
	// Kind is ErrNXDomain, ErrTemporary, ErrMalformed, or nil for another permanent
	// failure (REFUSED, NOTIMP, an invalid name).
	Kind error
	// Err is the cause (a network error, a context error), or nil.
	Err error
}

func (e *QueryError) Error() string {
	var b strings.Builder
	b.WriteString("dns: ")
	b.WriteString(dns.TypeToString[e.Type])
	if b.Len() == len("dns: ") {
		fmt.Fprintf(&b, "TYPE%d", e.Type)
	}
	b.WriteString(" ")
	b.WriteString(e.Name)
	if e.Server != "" {
		b.WriteString(" @")
		b.WriteString(e.Server)
	}
	b.WriteString(": ")
	switch {
	case e.Kind == ErrNXDomain:
		b.WriteString("no such domain")
	case e.Rcode > 0:
		b.WriteString("server answered ")
		b.WriteString(rcodeString(e.Rcode))
	case e.Err == nil && e.Kind != nil:
		b.WriteString(strings.TrimPrefix(e.Kind.Error(), "dns: "))
	case e.Err == nil:
		b.WriteString("failed")
	}
	if e.Err != nil {
		if e.Kind == ErrNXDomain || e.Rcode > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind sentinel and the cause, so that errors.Is matches both.
func (e *QueryError) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

func rcodeString(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// Chain follows the CNAME chain of the answer from the question name and returns the final
// name and the records of the question type owned by any name of the chain. A chain that
// loops stops where it would repeat a name.
func (a *Answer) Chain() (final string, rrs []dns.RR) {
	if a == nil {
		return "", nil
	}
	chain, rrs, _ := walk(a)
	return chain[len(chain)-1], rrs
}

// walk follows the CNAME chain of a from its question name (at most 32 links).
func walk(a *Answer) (chain []string, rrs []dns.RR, loop bool) {
	name := dns.CanonicalName(a.Name)
	chain = []string{name}
	if a.Type != dns.TypeCNAME {
		for range 32 {
			next := ""
			for _, rr := range a.Records {
				if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
					next = dns.CanonicalName(c.Target)
					break
				}
			}
			if next == "" {
				break
			}
			if containsFold(chain, next) {
				loop = true
				break
			}
			chain = append(chain, next)
			name = next
		}
	}
	for _, rr := range a.Records {
		h := rr.Header()
		if (h.Rrtype == a.Type || a.Type == dns.TypeANY) && containsFold(chain, h.Name) {
			rrs = append(rrs, rr)
		}
	}
	return chain, rrs, loop
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
