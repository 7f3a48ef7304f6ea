package spf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	"github.com/portcullis-mail/portcullis/dnsx"
)

// evaluator holds the state of one check_host() evaluation, including its nested
// include and redirect evaluations, which share the §4.6.4 limits.
type evaluator struct {
	ctx                               context.Context
	r                                 dnsx.Resolver
	ip                                netip.Addr
	opts                              *Options
	sender, local, senderDomain, helo string
	lookups, voids, voidLimit         int
	inInclude                         int // depth of include evaluation
}

// matchInfo says where a result came from.
type matchInfo struct {
	mechanism, explanation, domain string
}

var (
	errTooManyLookups = fmt.Errorf("more than %d DNS-querying terms (RFC 7208 §4.6.4)", MaxLookups)
	errTooManyVoids   = errors.New("too many void DNS lookups (RFC 7208 §4.6.4)")
)

// checkHost is RFC 7208 §4; include and redirect call it recursively and map its none.
func (e *evaluator) checkHost(domain string) (Status, *matchInfo, error) {
	info := &matchInfo{domain: domain}
	// §4.3: a malformed domain, or one that is not multi-label, gives none.
	if !validDomain(domain) {
		return None, info, nil
	}
	txt, err := e.lookupTXT(domain)
	if err != nil {
		if dnsx.IsNotFound(err) {
			return None, info, nil
		}
		return TempError, info, fmt.Errorf("TXT lookup of %s: %w", domain, err)
	}
	// §4.5: keep the records that start with "v=spf1"; one is expected.
	var recs []string
	for _, t := range txt {
		if isSPFRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return None, info, nil
	case 1:
	default:
		return PermError, info, fmt.Errorf("%s has %d SPF records (RFC 7208 §4.5)", domain, len(recs))
	}
	rec, err := parseRecord(recs[0])
	if err != nil {
		return PermError, info, fmt.Errorf("SPF record of %s: %w", domain, err)
	}
	env := e.env(domain)

	for _, d := range rec.directives {
		match, err := e.match(d, env)
		if err != nil {
			var st Status = PermError
			if errors.Is(err, dnsx.ErrTemporary) || errors.Is(err, errTemp) {
				st = TempError
			}
			info.mechanism = d.text
			return st, info, fmt.Errorf("%s in SPF record of %s: %w", d.text, domain, err)
		}
		if !match {
			continue
		}
		info.mechanism = d.text
		if d.result == Fail && rec.exp != nil && e.inInclude == 0 {
			// §6.2: after a redirect the target's exp applies; an included record's is
			// never used, so it is not even looked up.
			info.explanation = e.explain(rec.exp, env)
		}
		return d.result, info, nil
	}

	// §6.1: redirect applies when no mechanism matched.
	if rec.redirect != nil {
		if err := e.countLookup(); err != nil {
			return PermError, info, err
		}
		target := rec.redirect.expand(env, true)
		st, sub, err := e.checkHost(target)
		if err != nil {
			return st, sub, err
		}
		if st == None {
			// §6.1: no record at the redirect target is a permerror.
			return PermError, sub, fmt.Errorf("redirect=%s: no SPF record at %s", rec.redirect.raw, target)
		}
		return st, sub, nil
	}
	info.mechanism = "default"
	return Neutral, info, nil // §4.7
}

var errTemp = errors.New("temporary DNS failure")

func (e *evaluator) env(domain string) *macroEnv {
	return &macroEnv{
		sender: e.sender, local: e.local, senderDomain: e.senderDomain, domain: domain,
		helo: e.helo, ip: e.ip, receiver: e.opts.Receiver, now: e.opts.Now().Unix(),
		ptr: func() string { return e.validatedName(domain) },
	}
}

func (e *evaluator) countLookup() error {
	e.lookups++
	if e.lookups > MaxLookups {
		return errTooManyLookups
	}
	return nil
}

// void records a lookup that answered NXDOMAIN or no records (§4.6.4).
func (e *evaluator) void() error {
	e.voids++
	if e.voids > e.voidLimit {
		return errTooManyVoids
	}
	return nil
}

// match evaluates one mechanism (§5).
func (e *evaluator) match(d directive, env *macroEnv) (bool, error) {
	switch d.kind {
	case mAll:
		return true, nil
	case mIP4, mIP6:
		return d.prefix.Contains(e.ip), nil
	}
	if err := e.countLookup(); err != nil {
		return false, err
	}
	target := env.domain
	if d.domain != nil {
		target = d.domain.expand(env, true)
	}
	switch d.kind {
	case mInclude:
		e.inInclude++
		st, _, err := e.checkHost(target)
		e.inInclude--
		switch st {
		case Pass:
			return true, nil
		case Fail, SoftFail, Neutral:
			return false, nil
		case TempError:
			return false, fmt.Errorf("%w: %w", errTemp, err)
		case None:
			// §5.2: an included domain without a record is a permerror.
			return false, fmt.Errorf("no SPF record at %s", target)
		}
		return false, err
	case mA:
		return e.matchHost(target, d.cidr4, d.cidr6, true)
	case mMX:
		names, err := e.lookupMX(target)
		if err != nil {
			return false, err
		}
		// §4.6.4: more than 10 MX names is a permerror.
		if len(names) > MaxMXNames {
			return false, fmt.Errorf("%s has %d MX records, over %d", target, len(names), MaxMXNames)
		}
		for _, n := range names {
			ok, err := e.matchHost(n, d.cidr4, d.cidr6, false)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case mPTR:
		for _, n := range e.validatedNames() {
			if domainIsOrUnder(n, target) {
				return true, nil
			}
		}
		return false, nil
	case mExists:
		// §5.7: always an A query, whatever the client's address family.
		if !validDomain(target) {
			return false, nil
		}
		ips, err := e.lookupAddr(target, dns.TypeA)
		if err != nil {
			return false, err
		}
		if len(ips) == 0 {
			return false, e.void()
		}
		return true, nil
	}
	return false, fmt.Errorf("unhandled mechanism %q", d.text)
}

// matchHost looks up the addresses of name in the client's family and compares them with
// the client's address under the prefix lengths. countVoid says whether an empty answer
// counts toward the void limit (for the a mechanism, not for each MX name).
func (e *evaluator) matchHost(name string, c4, c6 int, countVoid bool) (bool, error) {
	if !validDomain(name) {
		// A target that cannot be a DNS name does not exist (§4.3 by analogy).
		return false, nil
	}
	qt, bits := dns.TypeA, c4
	if e.ip.Is6() {
		qt, bits = dns.TypeAAAA, c6
	}
	ips, err := e.lookupAddr(name, qt)
	if err != nil {
		return false, err
	}
	if len(ips) == 0 && countVoid {
		return false, e.void()
	}
	for _, a := range ips {
		p, err := a.Prefix(bits)
		if err == nil && p.Contains(e.ip) {
			return true, nil
		}
	}
	return false, nil
}

// validatedNames returns the client's validated PTR names (§5.5): at most 10 PTR names,
// each kept when one of its addresses is the client's. A PTR lookup error means no names.
func (e *evaluator) validatedNames() []string {
	rrs, err := e.query(reverseName(e.ip), dns.TypePTR)
	if err != nil {
		return nil
	}
	var names []string
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			names = append(names, strings.TrimSuffix(p.Ptr, "."))
		}
	}
	if len(names) == 0 {
		_ = e.void()
	}
	if len(names) > MaxPTRNames {
		names = names[:MaxPTRNames] // §4.6.4: ignore the rest
	}
	qt := dns.TypeA
	if e.ip.Is6() {
		qt = dns.TypeAAAA
	}
	var ok []string
	for _, n := range names {
		if !validDomain(n) {
			continue
		}
		ips, err := e.lookupAddr(n, qt)
		if err != nil {
			continue
		}
		for _, a := range ips {
			if a == e.ip {
				ok = append(ok, n)
				break
			}
		}
	}
	return ok
}

// validatedName is %{p} (§7.3): a validated name equal to or under domain if any, else
// any validated name, else "unknown".
func (e *evaluator) validatedName(domain string) string {
	names := e.validatedNames()
	for _, n := range names {
		if domainIsOrUnder(n, domain) {
			return n
		}
	}
	if len(names) > 0 {
		return names[0]
	}
	return "unknown"
}

func domainIsOrUnder(name, domain string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// explain computes the explanation of a fail (§6.2); any problem gives "".
func (e *evaluator) explain(exp *macroString, env *macroEnv) string {
	target := exp.expand(env, true)
	if !validDomain(target) {
		return ""
	}
	txt, err := e.lookupTXT(target)
	if err != nil || len(txt) != 1 {
		return ""
	}
	ms, err := parseMacroString(txt[0], true)
	if err != nil {
		return ""
	}
	return ms.expand(env, false)
}

// query asks the resolver and returns the records of type qt. NXDOMAIN is an error
// matching dnsx.ErrNXDomain; every other failure (timeout, SERVFAIL, any rcode but 0 and
// 3) is temporary (§5: temperror).
func (e *evaluator) query(name string, qt uint16) ([]dns.RR, error) {
	if err := e.ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", errTemp, err)
	}
	ans, err := e.r.Query(e.ctx, dns.Fqdn(escapeName(name)), qt)
	if err != nil {
		if dnsx.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s %s: %w", errTemp, dns.TypeToString[qt], name, err)
	}
	_, rrs := ans.Chain() // the records of type qt along the CNAME chain
	return rrs, nil
}

func (e *evaluator) lookupTXT(name string) ([]string, error) {
	rrs, err := e.query(name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		// §3.3: the strings of one record are joined without separator.
		out = append(out, dnsx.TXTData(rr.(*dns.TXT)))
	}
	return out, nil
}

// lookupAddr returns the A or AAAA addresses of name; NXDOMAIN is an empty answer.
func (e *evaluator) lookupAddr(name string, qt uint16) ([]netip.Addr, error) {
	rrs, err := e.query(name, qt)
	if err != nil && !dnsx.IsNotFound(err) {
		return nil, err
	}
	var out []netip.Addr
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
				out = append(out, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// lookupMX returns the exchange names of target; no MX (or NXDOMAIN) is a void lookup.
func (e *evaluator) lookupMX(target string) ([]string, error) {
	if !validDomain(target) {
		return nil, nil
	}
	rrs, err := e.query(target, dns.TypeMX)
	if err != nil && !dnsx.IsNotFound(err) {
		return nil, err
	}
	if len(rrs) == 0 {
		return nil, e.void()
	}
	names := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		names = append(names, strings.TrimSuffix(rr.(*dns.MX).Mx, "."))
	}
	return names, nil
}

// reverseName is the in-addr.arpa or ip6.arpa name of ip.
func reverseName(ip netip.Addr) string {
	if ip.Is4() {
		a := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa.", a[3], a[2], a[1], a[0])
	}
	s := dotIP(ip)
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b) + ".ip6.arpa."
}

// escapeName writes a name made by macro expansion, which may hold any printable byte, in
// the presentation form miekg/dns uses (RFC 1035 §5.1): special characters behind a
// backslash, others as \DDD. Dots stay label separators.
func escapeName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == ' ' || c == '(' || c == ')' || c == ';' || c == '@' || c == '"' || c == '\\' || c == '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
