package policy

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/portcullis-mail/portcullis/address"
)

// The rule environment. Each stage compiles its rules against a map whose values have
// fixed Go types, so that expr type-checks every rule at load: client, helo, sender, rcpt
// and msg are structs; each policy instance is a struct built at load (reflect.StructOf)
// from the standard result fields and the facts the policy declares.

// ClientEnv is `client` in rules.
type ClientEnv struct {
	IP            string   `expr:"ip"`
	Port          int      `expr:"port"`
	IPv6          bool     `expr:"ipv6"`
	Hostname      string   `expr:"hostname"` // forward-confirmed reverse DNS name, "" if none
	FCrDNS        bool     `expr:"fcrdns"`   // Hostname is set
	PTR           []string `expr:"ptr"`      // every PTR name, confirmed or not
	DNSError      bool     `expr:"dns_error"`
	Authenticated bool     `expr:"authenticated"`
	User          string   `expr:"user"`
	TLS           bool     `expr:"tls"`
	TLSVersion    string   `expr:"tls_version"`
	Trusted       bool     `expr:"trusted"` // in the configured trusted networks
	Listener      string   `expr:"listener"`
	Loopback      bool     `expr:"loopback"`
	Private       bool     `expr:"private"` // RFC 1918 / RFC 4193 address
	Rate          Rates    `expr:"rate"`    // event counts of the rate limits (client.rate.messages, ...)
}

// HeloEnv is `helo` in rules.
type HeloEnv struct {
	Name string `expr:"name"`
	// FQDN: the name has a dot, valid label syntax and no trailing garbage.
	FQDN bool `expr:"fqdn"`
	// IPLiteral: the name is an address literal such as [192.0.2.1].
	IPLiteral bool `expr:"ip_literal"`
	// LiteralMismatch: an address literal that is not the client's address.
	LiteralMismatch bool `expr:"literal_mismatch"`
	// Ours: the client claims to be us (our host name, or one of our local domains).
	Ours bool `expr:"ours"`
	// MatchesClient: the name is the client's forward-confirmed host name.
	MatchesClient bool `expr:"matches_client"`
	// BareIP: an address without the brackets RFC 5321 §4.1.3 requires.
	BareIP bool `expr:"bare_ip"`
}

// AddressEnv is `rcpt` in rules.
type AddressEnv struct {
	Address string            `expr:"address"` // local@domain, "" for the null sender
	Local   string            `expr:"local"`   // the local part
	Domain  string            `expr:"domain"`
	Null    bool              `expr:"null"`
	Params  map[string]string `expr:"params"` // MAIL FROM parameters (sender only)
	// Ours: the domain is one of our local domains.
	Ours bool `expr:"ours"`
	// AllowsSender and BlocksSender: the recipient's user put the envelope sender (or
	// its domain) on their "always allow" or "always block" list on the web page
	// (EngineConfig.SenderLists; false without one).
	AllowsSender bool `expr:"allows_sender"`
	BlocksSender bool `expr:"blocks_sender"`
}

// SenderEnv is `sender` in rules: the fields of AddressEnv and whether the
// authenticated user owns the address.
type SenderEnv struct {
	Address string            `expr:"address"` // local@domain, "" for the null sender
	Local   string            `expr:"local"`   // the local part
	Domain  string            `expr:"domain"`
	Null    bool              `expr:"null"`
	Params  map[string]string `expr:"params"` // MAIL FROM parameters
	// Ours: the domain is one of our local domains.
	Ours bool `expr:"ours"`
	// Owned: the client is authenticated and its user owns the address (their own, an
	// alias that delivers to them, the sender login map; the null sender: an admin).
	Owned bool `expr:"owned"`
}

// msgBase are the `msg` fields that need no policy.
type msgBase struct {
	Size          int      `expr:"size"`
	Subject       string   `expr:"subject"`
	From          string   `expr:"from"`        // the From: address (first one)
	FromDomain    string   `expr:"from_domain"` // its domain
	FromName      string   `expr:"from_name"`
	To            []string `expr:"to"`
	MessageID     string   `expr:"message_id"`
	ReceivedCount int      `expr:"received_count"`
	HeaderCount   int      `expr:"header_count"`
	// HeaderMalformed: lines in the header block that are no header field were skipped.
	HeaderMalformed bool   `expr:"header_malformed"`
	Date            string `expr:"date"` // the raw Date: header
}

func clientEnv(c *Conn) ClientEnv {
	e := ClientEnv{
		Port: c.Port, Hostname: c.Hostname, FCrDNS: c.Hostname != "", PTR: c.PTRNames,
		DNSError: c.DNSError, Authenticated: c.AuthUser != "", User: c.AuthUser, TLS: c.TLS,
		TLSVersion: c.TLSVer, Trusted: c.Trusted, Listener: c.Listener, Rate: c.Rate,
	}
	if c.IP.IsValid() {
		ip := c.IP.Unmap()
		e.IP, e.IPv6, e.Loopback, e.Private = ip.String(), ip.Is6(), ip.IsLoopback(), ip.IsPrivate()
	}
	return e
}

func heloEnv(tx *Transaction, localDomains map[string]bool) HeloEnv {
	name := tx.Conn.HELO
	e := HeloEnv{Name: name}
	if name == "" {
		return e
	}
	lower := strings.ToLower(strings.TrimSuffix(name, "."))
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		e.IPLiteral = true
		lit := strings.TrimPrefix(name[1:len(name)-1], "IPv6:")
		ip, err := netip.ParseAddr(lit)
		e.LiteralMismatch = err != nil || ip.Unmap() != tx.Conn.IP.Unmap()
		return e
	}
	if _, err := netip.ParseAddr(name); err == nil {
		e.BareIP = true
		return e
	}
	e.FQDN = isFQDN(lower)
	e.Ours = (tx.Hostname != "" && lower == strings.ToLower(tx.Hostname)) || localDomains[lower]
	e.MatchesClient = tx.Conn.Hostname != "" && lower == strings.ToLower(strings.TrimSuffix(tx.Conn.Hostname, "."))
	return e
}

// isFQDN reports whether name is a syntactically valid host name with at least two labels
// and a non-numeric top-level label (RFC 1123 §2.1).
func isFQDN(name string) bool {
	if len(name) > 253 || !strings.Contains(name, ".") {
		return false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	tld := labels[len(labels)-1]
	return strings.IndexFunc(tld, func(r rune) bool { return r < '0' || r > '9' }) >= 0
}

func addressEnv(a address.Address, params map[string]string, localDomains map[string]bool) AddressEnv {
	e := AddressEnv{Local: a.Local, Domain: a.Domain, Null: a.IsNull(), Params: params, Ours: a.Domain != "" && localDomains[a.Domain]}
	if !e.Null {
		e.Address = a.String()
	}
	return e
}

func senderEnv(env *Envelope, localDomains map[string]bool) SenderEnv {
	a := addressEnv(env.From, env.FromParams, localDomains)
	return SenderEnv{Address: a.Address, Local: a.Local, Domain: a.Domain, Null: a.Null, Params: a.Params, Ours: a.Ours, Owned: env.FromOwned}
}

func buildMsgBase(m *Message) msgBase {
	if m == nil {
		return msgBase{}
	}
	b := msgBase{Size: int(m.Size), Date: m.Header.Get("Date"), MessageID: strings.Trim(m.Header.Get("Message-Id"), "<> ")}
	h := mail.Header{Header: message.Header{Header: m.Header}}
	if s, err := h.Subject(); err == nil {
		b.Subject = s
	} else {
		b.Subject = m.Header.Get("Subject")
	}
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		b.From, b.FromName = strings.ToLower(from[0].Address), from[0].Name
	} else if raw := m.Header.Get("From"); raw != "" {
		// An unparsable From: still has a domain that rules and RHSBLs want to see.
		if i := strings.LastIndexByte(raw, '@'); i >= 0 {
			b.From = strings.ToLower(strings.Trim(raw[strings.LastIndexAny(raw[:i], " <\t")+1:], "<> \t"))
		}
	}
	b.FromDomain = address.Domain(b.From)
	if to, err := h.AddressList("To"); err == nil {
		for _, a := range to {
			b.To = append(b.To, strings.ToLower(a.Address))
		}
	}
	b.ReceivedCount = len(m.Header.Values("Received"))
	b.HeaderMalformed = m.HeaderMalformed
	fields := m.Header.Fields()
	for fields.Next() {
		b.HeaderCount++
	}
	return b
}

// viewType describes the struct a policy instance (or msg) has in the rule environment.
type viewType struct {
	t        reflect.Type
	base     int            // number of leading fixed fields
	factIdx  map[string]int // fact name -> field index
	factType map[string]reflect.Type
}

var resultFields = []reflect.StructField{
	{Name: "Status", Type: reflect.TypeFor[string](), Tag: `expr:"status"`},
	{Name: "Score", Type: reflect.TypeFor[float64](), Tag: `expr:"score"`},
	{Name: "Reason", Type: reflect.TypeFor[string](), Tag: `expr:"reason"`},
	{Name: "Error", Type: reflect.TypeFor[string](), Tag: `expr:"error"`},
	{Name: "Facts", Type: reflect.TypeFor[map[string]any](), Tag: `expr:"facts"`},
	// Shorthands for the common statuses.
	{Name: "Pass", Type: reflect.TypeFor[bool](), Tag: `expr:"pass"`},
	{Name: "Fail", Type: reflect.TypeFor[bool](), Tag: `expr:"fail"`},
	{Name: "TempError", Type: reflect.TypeFor[bool](), Tag: `expr:"temperror"`},
	{Name: "PermError", Type: reflect.TypeFor[bool](), Tag: `expr:"permerror"`},
}

// newViewType builds the struct type for a set of fixed fields plus declared facts.
func newViewType(fixed []reflect.StructField, facts map[string]any) (*viewType, error) {
	fields := append([]reflect.StructField(nil), fixed...)
	taken := map[string]bool{}
	for _, f := range fixed {
		taken[f.Tag.Get("expr")] = true
	}
	vt := &viewType{base: len(fixed), factIdx: map[string]int{}, factType: map[string]reflect.Type{}}
	names := make([]string, 0, len(facts))
	for n := range facts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if taken[n] {
			continue // reachable as .facts.NAME only
		}
		if !isIdent(n) {
			return nil, fmt.Errorf("fact name %q is not an identifier", n)
		}
		t := reflect.TypeFor[any]()
		if v := facts[n]; v != nil {
			t = reflect.TypeOf(v)
		}
		vt.factIdx[n] = len(fields)
		vt.factType[n] = t
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("F%d", len(fields)), Type: t, Tag: reflect.StructTag(`expr:"` + n + `"`)})
	}
	vt.t = reflect.StructOf(fields)
	return vt, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// zero returns the zero value of the view, for compilation.
func (vt *viewType) zero() any { return reflect.New(vt.t).Elem().Interface() }

// setFacts copies facts into v's fact fields, converting numbers where needed. Facts of an
// unexpected type are left at zero (and still reachable through .facts).
func (vt *viewType) setFacts(v reflect.Value, facts map[string]any) {
	for name, idx := range vt.factIdx {
		val, ok := facts[name]
		if !ok || val == nil {
			continue
		}
		rv := reflect.ValueOf(val)
		ft := vt.factType[name]
		switch {
		case rv.Type().AssignableTo(ft):
			v.Field(idx).Set(rv)
		case rv.Type().ConvertibleTo(ft) && isNumeric(rv.Kind()) && isNumeric(ft.Kind()):
			v.Field(idx).Set(rv.Convert(ft))
		}
	}
}

func isNumeric(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64
}

// resultValue fills a policy view from a result.
func (vt *viewType) resultValue(r Result) any {
	v := reflect.New(vt.t).Elem()
	v.Field(0).SetString(string(r.Status))
	v.Field(1).SetFloat(r.Score)
	v.Field(2).SetString(r.Reason)
	if r.Err != nil {
		v.Field(3).SetString(r.Err.Error())
	}
	facts := r.Facts
	if facts == nil {
		facts = map[string]any{}
	}
	v.Field(4).Set(reflect.ValueOf(facts))
	v.Field(5).SetBool(r.Status == StatusPass)
	v.Field(6).SetBool(r.Status == StatusFail)
	v.Field(7).SetBool(r.Status == StatusTempError)
	v.Field(8).SetBool(r.Status == StatusPermError)
	vt.setFacts(v, r.Facts)
	return v.Interface()
}

var msgFixed = func() []reflect.StructField {
	t := reflect.TypeFor[msgBase]()
	out := make([]reflect.StructField, t.NumField())
	for i := range out {
		out[i] = t.Field(i)
	}
	return out
}()

// msgValue fills the msg view from the base fields and the results of the msg providers.
func (vt *viewType) msgValue(b msgBase, providers []Result) any {
	v := reflect.New(vt.t).Elem()
	bv := reflect.ValueOf(b)
	for i := 0; i < bv.NumField(); i++ {
		v.Field(i).Set(bv.Field(i))
	}
	for _, r := range providers {
		vt.setFacts(v, r.Facts)
	}
	return v.Interface()
}
