package decisionlog

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Scope says whose records a query may see. The zero Scope sees nothing, so a caller
// that forgets to fill it leaks nothing.
type Scope struct {
	// All: every record (an admin).
	All bool
	// Recipients are a user's addresses and aliases: the records addressed to them.
	Recipients []string
	// AuthUser is a user's login: the records of the mail they submitted after
	// authenticating (was it delivered, deferred, bounced?).
	AuthUser string
}

// Sort orders query results. The zero value is SortNewest.
type Sort int

// The orders Query knows.
const (
	SortNewest Sort = iota
	SortOldest
	SortScoreHigh
	SortScoreLow
	SortSizeLarge
	SortSizeSmall
)

// Cursor is an opaque position in a query's results; "" is the first page (as an
// input) or the end (as an output).
type Cursor string

// Filter selects records. Every non-zero field narrows the result.
type Filter struct {
	Scope Scope

	// Address is an address (matched against sender or recipient) or a domain
	// ("example.com" or "@example.com", matched against either side's domain).
	Address string
	// Sender and Recipient match one side only (an address or a domain, as Address).
	Sender, Recipient string
	// Client is an IP address or a network in CIDR notation.
	Client string
	// Subject: every word must appear in the Subject (case-insensitive for ASCII).
	Subject   string
	MessageID string // exact, with or without angle brackets
	QueueID   string
	AuthUser  string

	Verdicts   []string // any of
	Outcomes   []string // any of; "none" matches records without an outcome
	Categories []string // any of
	Stages     []string // any of
	Rule       string
	Policy     string // a policy instance that reported a result other than none or pass
	Listener   string
	// Blocked: only reject, tempfail, discard and quarantine verdicts.
	Blocked bool
	// Connections: true only connection-level records (no recipient); false: any.
	Connections bool

	Since, Until time.Time // [Since, Until)
	MinScore     *float64

	Sort   Sort
	Limit  int    // page size, default 50, at most 1000
	Cursor Cursor // where the previous page ended
}

// ErrBadFilter wraps the errors of a filter that cannot be run (a bad client network,
// a bad cursor).
var ErrBadFilter = errors.New("decisionlog: bad filter")

// MaxSubjectWords is the most words Filter.Subject may hold.
const MaxSubjectWords = 10

// ErrNotFound is returned by Get for a record that does not exist or is outside the scope.
var ErrNotFound = errors.New("decisionlog: no such record")

// query builds a WHERE clause with ? placeholders.
type query struct {
	where []string
	args  []any
	like  string // LIKE or ILIKE
	pg    bool   // PostgreSQL: lists are arrays
}

func (q *query) add(cond string, args ...any) {
	q.where = append(q.where, cond)
	q.args = append(q.args, args...)
}

func (q *query) in(col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	ph := strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	q.add(col+" IN ("+ph+")", args...)
}

func (q *query) sql() string {
	if len(q.where) == 0 {
		return "1=1"
	}
	return strings.Join(q.where, " AND ")
}

// likeEscape escapes LIKE wildcards; the query uses ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func normAddr(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// domainOf returns the domain s names: "example.com" or "@example.com", or "" when s is
// an address.
func domainOf(s string) (string, bool) {
	s = normAddr(s)
	if strings.HasPrefix(s, "@") {
		return s[1:], true
	}
	if !strings.Contains(s, "@") {
		return s, true
	}
	return "", false
}

func (q *query) scope(sc Scope) {
	if sc.All {
		return
	}
	var or []string
	var args []any
	if len(sc.Recipients) > 0 {
		// One parameter however many aliases a user has (SQLite allows 32,766
		// variables a statement): a JSON array in SQLite, an array in PostgreSQL.
		// Both still walk the recipient index once per address.
		addrs := make([]string, len(sc.Recipients))
		for i, r := range sc.Recipients {
			addrs[i] = normAddr(r)
		}
		if q.pg {
			or = append(or, "recipient = ANY(?)")
			args = append(args, addrs)
		} else {
			b, _ := json.Marshal(addrs)
			or = append(or, "recipient IN (SELECT value FROM json_each(?))")
			args = append(args, string(b))
		}
	}
	if sc.AuthUser != "" {
		or = append(or, "(auth_user = ? AND auth_user <> '')") // the partial index's condition
		args = append(args, sc.AuthUser)
	}
	if len(or) == 0 {
		q.add("1=0")
		return
	}
	q.add("("+strings.Join(or, " OR ")+")", args...)
}

// side matches an address or domain against one side's columns; viaDomain when the
// address column has no index of its own (its domain's narrows).
func (q *query) side(addrCol, domCol, v string, viaDomain bool) {
	if d, ok := domainOf(v); ok {
		q.add(domCol+" = ?", d)
		return
	}
	a := normAddr(v)
	if viaDomain {
		q.add("("+domCol+" = ? AND "+addrCol+" = ?)", domainPart(a), a)
		return
	}
	q.add(addrCol+" = ?", a)
}

// ipRange returns the 16-byte bounds of an address or network.
func ipRange(s string) (lo, hi []byte, err error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: client %q: %v", ErrBadFilter, s, err)
	}
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	l := p.Addr().As16()
	h := l
	for i := bits; i < 128; i++ {
		h[i/8] |= 0x80 >> (i % 8)
	}
	return l[:], h[:], nil
}

func ipBytes(a netip.Addr) []byte {
	if !a.IsValid() {
		return make([]byte, 16)
	}
	b := a.Unmap().As16()
	return b[:]
}

func ipFromBytes(b []byte) netip.Addr {
	if len(b) != 16 {
		return netip.Addr{}
	}
	a := netip.AddrFrom16([16]byte(b)).Unmap()
	if a.IsUnspecified() && a.Is6() {
		return netip.Addr{}
	}
	return a
}

// build turns the filter (without sort and cursor) into a WHERE clause.
func (f *Filter) build(d dialect) (*query, error) {
	q := &query{like: d.like(), pg: d.postgres}
	like := q.like
	q.scope(f.Scope)
	if f.Address != "" {
		if d, ok := domainOf(f.Address); ok {
			q.add("(sender_domain = ? OR rcpt_domain = ?)", d, d)
		} else {
			a := normAddr(f.Address)
			// the sender's domain narrows through its index (senders have none of
			// their own); recipients have theirs
			q.add("((sender_domain = ? AND sender = ?) OR recipient = ?)", domainPart(a), a, a)
		}
	}
	if f.Sender != "" {
		q.side("sender", "sender_domain", f.Sender, true)
	}
	if f.Recipient != "" {
		q.side("recipient", "rcpt_domain", f.Recipient, false)
	}
	if f.Client != "" {
		lo, hi, err := ipRange(f.Client)
		if err != nil {
			return nil, err
		}
		q.add("client_ip BETWEEN ? AND ?", lo, hi)
	}
	words := 0
	for w := range strings.FieldsSeq(f.Subject) {
		// Each word is a scan of the candidates' subjects: a bound keeps a search cheap.
		if words++; words > MaxSubjectWords {
			return nil, fmt.Errorf("%w: more than %d words of Subject", ErrBadFilter, MaxSubjectWords)
		}
		q.add("subject "+like+" ? ESCAPE '\\'", "%"+likeEscape(w)+"%")
	}
	if f.MessageID != "" {
		q.add("message_id = ? AND message_id <> ''", strings.Trim(strings.TrimSpace(f.MessageID), "<>"))
	}
	if f.QueueID != "" {
		q.add("queue_id = ? AND queue_id <> ''", f.QueueID)
	}
	if f.AuthUser != "" {
		q.add("auth_user = ? AND auth_user <> ''", f.AuthUser)
	}
	q.in("verdict", f.Verdicts)
	if len(f.Outcomes) > 0 {
		vals := make([]string, len(f.Outcomes))
		for i, o := range f.Outcomes {
			if o == "none" {
				o = ""
			}
			vals[i] = o
		}
		q.in("outcome", vals)
	}
	q.in("category", f.Categories)
	q.in("stage", f.Stages)
	if f.Rule != "" {
		q.add("rule = ?", f.Rule)
	}
	if f.Policy != "" {
		// flagged lists, space-separated and space-framed, the policies whose status
		// was neither none nor pass.
		q.add("flagged "+like+" ? ESCAPE '\\'", "% "+likeEscape(f.Policy)+" %")
	}
	if f.Listener != "" {
		q.add("listener = ?", f.Listener)
	}
	if f.Blocked {
		q.in("verdict", []string{VerdictReject, VerdictTempfail, VerdictDiscard, VerdictQuarantine})
	}
	if f.Connections {
		q.add("recipient = ''")
	}
	if !f.Since.IsZero() {
		q.add("t >= ?", micros(f.Since))
	}
	if !f.Until.IsZero() {
		q.add("t < ?", micros(f.Until))
	}
	if f.MinScore != nil {
		q.add("score >= ?", *f.MinScore)
	}
	return q, nil
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// cursor is the decoded position: the sort key of the last row and its id, and the
// digest of the search it belongs to (scope, filter and order): a cursor from another
// search, or another user's, is refused rather than applied to this one.
type cursor struct {
	K float64 `json:"k"`
	I int64   `json:"i"`
	F string  `json:"f"`
}

// searchDigest identifies a search: its WHERE clause, arguments and order.
func searchDigest(q *query, col, dir string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", col, dir, q.sql())
	for _, a := range q.args {
		fmt.Fprintf(h, "\x00%T:%v", a, a)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

func (c Cursor) decode() (*cursor, error) {
	if c == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(string(c))
	if err != nil {
		return nil, fmt.Errorf("%w: cursor: %v", ErrBadFilter, err)
	}
	var k cursor
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%w: cursor: %v", ErrBadFilter, err)
	}
	return &k, nil
}

func (k cursor) encode() Cursor {
	b, _ := json.Marshal(k)
	return Cursor(base64.RawURLEncoding.EncodeToString(b))
}

// order returns the sort column, whether it descends, and the key of a record.
func (s Sort) order() (col string, desc bool, key func(Record) float64) {
	switch s {
	case SortOldest:
		return "t", false, func(r Record) float64 { return float64(micros(r.Time)) }
	case SortScoreHigh:
		return "score", true, func(r Record) float64 { return r.Score }
	case SortScoreLow:
		return "score", false, func(r Record) float64 { return r.Score }
	case SortSizeLarge:
		return "size", true, func(r Record) float64 { return float64(r.Size) }
	case SortSizeSmall:
		return "size", false, func(r Record) float64 { return float64(r.Size) }
	}
	return "t", true, func(r Record) float64 { return float64(micros(r.Time)) }
}
