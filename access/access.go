package access

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Map is one access table file, re-read when it changes.
type Map struct {
	Spec string // as configured: "cidr:/etc/postfix/clients"
	typ  Type
	path string
	// check is how often a lookup may stat the file for a change.
	check   time.Duration
	timeout time.Duration
	log     *slog.Logger

	cur       atomic.Pointer[loaded]
	mu        sync.Mutex // one reload at a time
	lastCheck atomic.Int64
}

type loaded struct {
	t     table
	mtime time.Time
	size  int64
}

// MapOptions tune Open.
type MapOptions struct {
	// CheckInterval: how often a lookup looks whether the file changed (default 10s; a
	// negative value never does).
	CheckInterval time.Duration
	// MatchTimeout bounds one backtracking regexp/pcre match (default: package headers').
	MatchTimeout time.Duration
	Logger       *slog.Logger
}

// Open loads the table named by spec ("texthash:/etc/postfix/access", "cidr:...",
// "pcre:...", or a plain path).
func Open(spec string, opt MapOptions) (*Map, error) {
	typ, path, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("access: table %q: no file", spec)
	}
	if opt.CheckInterval == 0 {
		opt.CheckInterval = 10 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	m := &Map{Spec: spec, typ: typ, path: path, check: opt.CheckInterval, timeout: opt.MatchTimeout, log: opt.Logger}
	if err := m.Reload(); err != nil {
		return nil, err
	}
	m.lastCheck.Store(time.Now().UnixNano())
	return m, nil
}

// Type returns the table's type.
func (m *Map) Type() Type { return m.typ }

// Reload re-reads the file. A file that fails to load leaves the previous contents in
// place and returns the error.
func (m *Map) Reload() error { return m.load(true) }

func (m *Map) load(force bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	fi, err := os.Stat(m.path)
	if err != nil {
		return fmt.Errorf("access: %w", err)
	}
	old := m.cur.Load()
	if !force && old != nil && fi.ModTime().Equal(old.mtime) && fi.Size() == old.size {
		return nil
	}
	t, err := loadTable(m.typ, m.path, m.timeout, validateResult)
	if err != nil {
		if old != nil {
			m.log.Error("access: table not reloaded; keeping the previous contents", "table", m.Spec, "err", err)
		}
		return err
	}
	m.cur.Store(&loaded{t: t, mtime: fi.ModTime(), size: fi.Size()})
	if old != nil {
		m.log.Info("access: table reloaded", "table", m.Spec)
	}
	return nil
}

func (m *Map) table() table {
	if m.check > 0 {
		now := time.Now().UnixNano()
		if last := m.lastCheck.Load(); now-last >= int64(m.check) && m.lastCheck.CompareAndSwap(last, now) {
			_ = m.load(false) // logged by load; the old contents stay
		}
	}
	return m.cur.Load().t
}

// Found is the outcome of one access check.
type Found struct {
	Entry
	Action Action
	// Reply is the SMTP reply Postfix sends for a refusing action ("" for others).
	Reply string
}

// Keys says how to search: Postfix's parent_domain_matches_subdomains for
// smtpd_access_maps (true by default: "example.com" also matches its subdomains; when
// false, ".example.com" keys do) and recipient_delimiter (default none).
type Keys struct {
	ParentMatchesSubdomains bool
	RecipientDelimiter      string
}

// search runs the lookups of keys in order, each either a full lookup (every table type)
// or a partial one (fixed tables only), and returns the first entry found.
func (m *Map) search(keys []key) (Entry, bool, error) {
	t := m.table()
	fixed := t.fixed()
	for _, k := range keys {
		if k.partial && !fixed {
			continue
		}
		name := k.s
		if fixed {
			name = strings.ToLower(name)
		}
		e, ok, err := t.get(name)
		if ok || err != nil {
			return e, ok, err
		}
	}
	return Entry{}, false, nil
}

type key struct {
	s       string
	partial bool
}

// domainKeys are check_domain_access's keys: the name, then its parent domains ("b.c",
// "c" with parent matching; ".b.c", ".c" without). Postfix strips nothing but a trailing
// dot's empty key.
func (k Keys) domainKeys(out []key, domain string, first bool) []key {
	name := strings.ToLower(domain)
	partial := !first
	for name != "" {
		out = append(out, key{name, partial})
		partial = true
		i := strings.IndexByte(name[1:], '.')
		if i < 0 {
			break
		}
		next := name[i+1:]
		if k.ParentMatchesSubdomains {
			next = next[1:]
		}
		name = next
	}
	return out
}

// addrKeys are check_addr_access's keys: the address, then shorter prefixes at "." (IPv4)
// or ":" (IPv6) as Postfix splits them ("1.2.3.4", "1.2.3", "1.2", "1").
func addrKeys(out []key, addr string) []key {
	delim := byte('.')
	if strings.IndexByte(addr, ':') >= 0 {
		delim = ':'
	}
	partial := false
	for addr != "" {
		out = append(out, key{addr, partial})
		partial = true
		i := strings.LastIndexByte(addr, delim)
		if i < 0 {
			break
		}
		addr = addr[:i]
	}
	return out
}

// clientKeys are check_namadr_access's keys: the host name (or "unknown") and its
// parents, then the address and its prefixes.
func (k Keys) clientKeys(name string, ip netip.Addr) []key {
	if name == "" {
		name = "unknown"
	}
	out := k.domainKeys(nil, strings.TrimSuffix(name, "."), true)
	if ip.IsValid() {
		out = addrKeys(out, ip.Unmap().String())
	}
	return out
}

// mailKeys are check_mail_access's keys for an address (local@domain): the full address,
// the address without its extension, the domain and its parents, "local@", and "local@"
// without the extension. The null sender is looked up as "<>"
// (smtpd_null_access_lookup_key).
func (k Keys) mailKeys(addr string) []key {
	if addr == "" || addr == "<>" {
		return []key{{"<>", false}}
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return []key{{addr, false}, {addr + "@", true}}
	}
	local, domain := addr[:at], addr[at+1:]
	bare := ""
	if k.RecipientDelimiter != "" {
		if i := strings.IndexAny(local, k.RecipientDelimiter); i > 0 {
			bare = local[:i]
		}
	}
	out := []key{{addr, false}}
	if bare != "" {
		out = append(out, key{bare + "@" + domain, true})
	}
	out = k.domainKeys(out, domain, false)
	out = append(out, key{local + "@", true})
	if bare != "" {
		out = append(out, key{bare + "@", true})
	}
	return out
}

// The reply classes of smtpd_check.c.
const (
	ClassClient        = "Client host"
	ClassReverseClient = "Unverified Client host"
	ClassHelo          = "Helo command"
	ClassSender        = "Sender address"
	ClassRecipient     = "Recipient address"
)

func (m *Map) find(keys []key, name, class string) (Found, bool, error) {
	e, ok, err := m.search(keys)
	if !ok {
		return Found{}, false, err
	}
	a, perr := ParseAction(e.Value)
	if perr != nil {
		// A substituted regexp result that is no action: Postfix answers "451 4.3.5 Server
		// configuration error".
		return Found{Entry: e}, true, fmt.Errorf("access: %s:%d: %w", e.File, e.Line, perr)
	}
	return Found{Entry: e, Action: a, Reply: a.Reply(name, class)}, true, err
}

// Client is check_client_access: the client's host name ("" for unknown) and address.
func (m *Map) Client(k Keys, hostname string, ip netip.Addr) (Found, bool, error) {
	return m.find(k.clientKeys(hostname, ip), namaddr(hostname, ip), ClassClient)
}

// ReverseClient is check_reverse_client_hostname_access: the unverified PTR name ("" for
// none) and the address.
func (m *Map) ReverseClient(k Keys, ptrName string, ip netip.Addr) (Found, bool, error) {
	name := ptrName
	if name == "" {
		name = "unknown"
	}
	// smtpd_check.c names the unverified name alone in the reply, without the address.
	return m.find(k.clientKeys(ptrName, ip), name, ClassReverseClient)
}

// Helo is check_helo_access.
func (m *Map) Helo(k Keys, helo string) (Found, bool, error) {
	if helo == "" {
		return Found{}, false, nil
	}
	return m.find(k.domainKeys(nil, helo, true), helo, ClassHelo)
}

// Sender is check_sender_access ("" is the null sender).
func (m *Map) Sender(k Keys, addr string) (Found, bool, error) {
	name := addr
	if name == "" {
		name = "<>"
	}
	return m.find(k.mailKeys(addr), name, ClassSender)
}

// Recipient is check_recipient_access.
func (m *Map) Recipient(k Keys, addr string) (Found, bool, error) {
	return m.find(k.mailKeys(addr), addr, ClassRecipient)
}

// namaddr is Postfix's "name[address]" with "unknown" for no name.
func namaddr(name string, ip netip.Addr) string {
	if name == "" {
		name = "unknown"
	}
	return name + "[" + ip.Unmap().String() + "]"
}
