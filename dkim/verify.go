package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/dnsx"
)

// Result values of a DKIM signature (RFC 8601 §2.7.1).
const (
	ResultPass      = "pass"
	ResultFail      = "fail"      // the signature did not verify
	ResultNeutral   = "neutral"   // not used for signatures we could evaluate
	ResultTempError = "temperror" // the key could not be fetched now
	ResultPermError = "permerror" // a broken signature or key, no key, an expired signature
	ResultNone      = "none"      // the message is not signed
)

// Signature is the outcome of one DKIM-Signature.
type Signature struct {
	Domain     string // d=, the signing domain (SDID)
	Selector   string // s=
	Identifier string // i=, the AUID
	Result     string // ResultPass, ResultFail, ResultTempError or ResultPermError
	// Reason says why a signature did not pass ("no key for signature", ...).
	Reason string
}

// DefaultMaxSignatures is how many signatures Verify checks by default; more are
// reported as permerror without work (hostile messages may carry hundreds).
const DefaultMaxSignatures = 8

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// MaxSignatures bounds the signatures checked (default DefaultMaxSignatures).
	MaxSignatures int
}

// Verify checks every DKIM-Signature of the message in r (header and body, CRLF or LF
// line endings) and returns one Signature per signature field, in header order; none
// for an unsigned message. Key lookups go through res with ctx. The error is non-nil
// only when the message could not be read or parsed at all.
func Verify(ctx context.Context, res dnsx.Resolver, r io.Reader, opts *VerifyOptions) ([]Signature, error) {
	max := DefaultMaxSignatures
	if opts != nil && opts.MaxSignatures > 0 {
		max = opts.MaxSignatures
	}
	// Selectors are not in go-msgauth's Verification; read them from the header first.
	var buf bytes.Buffer
	sels, total, err := signatureSelectors(io.TeeReader(r, &buf))
	if err != nil {
		return nil, fmt.Errorf("dkim: read header: %w", err)
	}
	if total == 0 {
		return nil, nil
	}
	vs, err := dkim.VerifyWithOptions(io.MultiReader(&buf, r), &dkim.VerifyOptions{
		LookupTXT:        LookupTXTFunc(ctx, res),
		MaxVerifications: max,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return nil, fmt.Errorf("dkim: verify: %w", err)
	}
	out := make([]Signature, 0, total)
	for i, v := range vs {
		if v == nil {
			continue
		}
		s := Signature{Domain: strings.ToLower(v.Domain), Identifier: v.Identifier, Result: ResultPass}
		if i < len(sels) {
			s.Selector = sels[i]
		}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			s.Result, s.Reason = ResultTempError, trimReason(v.Err)
		case dkim.IsPermFail(v.Err):
			s.Result, s.Reason = ResultPermError, trimReason(v.Err)
		default:
			s.Result, s.Reason = ResultFail, trimReason(v.Err)
		}
		out = append(out, s)
	}
	for i := len(out); i < total; i++ {
		s := Signature{Result: ResultPermError, Reason: fmt.Sprintf("more than %d signatures", max)}
		if i < len(sels) {
			s.Selector = sels[i]
		}
		out = append(out, s)
	}
	return out, nil
}

func trimReason(err error) string {
	s := strings.TrimPrefix(err.Error(), "dkim: ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// signatureSelectors reads the header and returns the s= tag of every DKIM-Signature
// field and their number.
func signatureSelectors(r io.Reader) ([]string, int, error) {
	h, err := readHeader(r)
	if err != nil {
		return nil, 0, err
	}
	var sels []string
	for _, f := range h {
		if !f.Is("DKIM-Signature") {
			continue
		}
		sel := ""
		for _, tag := range strings.Split(f.Value(), ";") {
			k, v, _ := strings.Cut(tag, "=")
			if strings.TrimSpace(k) == "s" {
				sel = strings.Join(strings.Fields(v), "")
			}
		}
		sels = append(sels, sel)
	}
	return sels, len(sels), nil
}

// LookupTXTFunc adapts a dnsx resolver to the LookupTXT hook of go-msgauth: TXT strings
// joined per record and unescaped, temporary failures as a temporary net.Error (so that
// go-msgauth reports temperror), NXDOMAIN as a not-found net.DNSError.
func LookupTXTFunc(ctx context.Context, r dnsx.Resolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if !ldhName(name) {
			// A selector or domain that cannot be a host name has no key (permerror).
			return nil, &net.DNSError{Err: "invalid key name", Name: name, IsNotFound: true}
		}
		ans, err := r.Query(ctx, dns.Fqdn(name), dns.TypeTXT)
		if err != nil {
			dnsErr := &net.DNSError{Err: err.Error(), Name: name}
			switch {
			case dnsx.IsNotFound(err):
				dnsErr.IsNotFound = true
			case dnsx.IsTemporary(err) || ctx.Err() != nil:
				dnsErr.IsTemporary, dnsErr.IsTimeout = true, true
			default:
				// RFC 6376 §6.1.2: a key that cannot be fetched for another reason is
				// still worth another try; treat every other DNS failure as temporary.
				dnsErr.IsTemporary = true
			}
			return nil, dnsErr
		}
		_, rrs := ans.Chain()
		var out []string
		for _, rr := range rrs {
			if t, ok := rr.(*dns.TXT); ok {
				out = append(out, dnsx.TXTData(t))
			}
		}
		return out, nil
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// ldhName reports whether name is made of letters, digits, hyphens, underscores and dots
// only, with valid label lengths: what DKIM key and DMARC names look like (A-labels).
func ldhName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i] | 0x20
			if !(c >= 'a' && c <= 'z' || isDigit(l[i]) || l[i] == '-' || l[i] == '_') {
				return false
			}
		}
	}
	return true
}
