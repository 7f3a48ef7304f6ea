// Package dnsx is the DNS layer every portcullis policy shares: one small Resolver
// interface (a single Query method), typed lookups built on it (A, AAAA, TXT, MX, PTR), a
// client on github.com/miekg/dns, and a TTL-honouring cache. Tests use dnsx/dnstest, an
// in-process DNS server on loopback, never the machine's resolver.
package dnsx

import (
	"context"
	"errors"

	"github.com/miekg/dns"
)

// Resolver answers one DNS question. It is the only method an implementation needs; the
// typed lookups (LookupTXT, LookupIP, ...) are functions over it.
//
// Errors: a name that does not exist returns an error matching ErrNXDomain; a failure that
// may succeed later (timeout, SERVFAIL, network) an error matching ErrTemporary; any other
// error is permanent (REFUSED, FORMERR, a malformed answer). A name that exists without
// records of the type (NODATA) returns an Answer with no records and a nil error.
type Resolver interface {
	Query(ctx context.Context, name string, qtype uint16) (*Answer, error)
}

// Answer is the answer section of a response.
type Answer struct {
	Name    string   // the question name, fully qualified
	Type    uint16   // the question type
	Rcode   int      // dns.RcodeSuccess, dns.RcodeNameError, ...
	Records []dns.RR // the answer section (CNAME chains included)
	// AuthenticatedData is the AD bit of the response (DNSSEC-validated by the resolver).
	AuthenticatedData bool
	// SOA is the SOA record from the authority section of a negative (NODATA) answer, when
	// the server sent one; caches use it for the negative TTL (RFC 2308 §5). Nil otherwise.
	SOA *dns.SOA
}

// Sentinel errors; match them with errors.Is.
var (
	ErrNXDomain  = errors.New("dns: no such domain")
	ErrTemporary = errors.New("dns: temporary failure")
	// ErrMalformed marks a permanent failure caused by a response that does not parse or
	// does not answer the question asked (also a CNAME loop). It is not temporary.
	ErrMalformed = errors.New("dns: malformed response")
)

// IsNotFound reports whether err means the name does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNXDomain) }

// IsTemporary reports whether err is a transient failure worth a temperror.
func IsTemporary(err error) bool { return errors.Is(err, ErrTemporary) }
