package smtpd

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/portcullis-mail/portcullis/address"
)

// Address errors. go-smtp has already parsed the path (RFC 5321 §4.1.2): it strips a
// source route (`@a,@b:user@dom`, which RFC 5321 §4.1.1.3 says to ignore; we then judge
// the final address) and the quotes of a quoted local part.
var (
	errAddrSyntax  = errors.New("bad address syntax")
	errAddrRouting = errors.New("sender-specified routing in the local part")
)

// parseMailbox parses an address handed over by go-smtp ("" is the null path) and
// checks its syntax. A local part that still contains '@', '%' or '!' (after go-smtp
// removed the quotes of `"user@other"@local`) is the classic relay trick
// (`user%other@local`, `other!user@local`): it is reported as errAddrRouting so the caller
// can refuse it unless the client may relay anyway (Postfix's allow_untrusted_routing=no).
func parseMailbox(raw string) (address.Address, error) {
	if raw == "" {
		return address.Address{}, nil
	}
	local, domain, ok := address.Split(raw)
	if !ok {
		return address.Address{}, errAddrSyntax
	}
	// RFC 5321 §4.5.3.1.1: local part at most 64 octets, domain at most 255.
	if len(local) > 64 || len(domain) > 255 {
		return address.Address{}, errAddrSyntax
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x20 || c >= 0x7f {
			return address.Address{}, errAddrSyntax
		}
	}
	if !validDomain(domain) && !validAddressLiteral(domain) {
		return address.Address{}, errAddrSyntax
	}
	a := address.Address{Raw: raw, Local: local, Domain: domain}
	if strings.ContainsAny(local, "@%!") {
		return a, errAddrRouting
	}
	return a, nil
}

// validDomain reports whether d (lower case, no trailing dot) is an ASCII host name:
// dot-separated labels of letters, digits and hyphens (RFC 5321 §4.1.2 Domain).
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validAddressLiteral accepts [192.0.2.1] and [IPv6:2001:db8::1] (RFC 5321 §4.1.3).
func validAddressLiteral(d string) bool {
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return false
	}
	in := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(in, "ipv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6()
	}
	a, err := netip.ParseAddr(in)
	return err == nil && a.Is4()
}
