package dnsx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// ClientConfig configures a Client. The zero value reads the servers, timeout and attempts
// from /etc/resolv.conf.
type ClientConfig struct {
	// Servers are the recursive resolvers to ask, as "host" or "host:port" (port 53 by
	// default), tried in order. Empty means the nameservers of ResolvConf.
	Servers []string `yaml:"servers"`
	// ResolvConf is the resolv.conf file read when Servers is empty, on the first query
	// (default /etc/resolv.conf).
	ResolvConf string `yaml:"resolv_conf"`
	// Timeout bounds one attempt at one server, including a retry over TCP after a
	// truncated UDP answer (default: resolv.conf's timeout, else 2s).
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is the number of rounds over all servers (default: resolv.conf's attempts,
	// else 2).
	Attempts int `yaml:"attempts"`
	// UDPSize is the EDNS0 UDP payload size advertised (default 4KiB, RFC 6891 §6.2.5;
	// 512 to 65535 bytes).
	UDPSize bytesize.Size `yaml:"udp_size"`
	// NoEDNS0 sends plain DNS queries without an OPT record.
	NoEDNS0 bool `yaml:"no_edns0"`
	// MaxCNAMEs bounds how many CNAME links the client chases itself when a server
	// returns a chain that stops short of the answer (default 8).
	MaxCNAMEs int `yaml:"max_cnames"`
}

// Client is a Resolver that asks recursive DNS servers over UDP, retrying over TCP when an
// answer is truncated (RFC 7766 §5). It is safe for concurrent use.
type Client struct {
	cfg ClientConfig

	once    sync.Once
	servers []string
	loadErr error
}

// NewClient returns a client. It does no I/O: when cfg.Servers is empty, resolv.conf is
// read on the first query, and a failure to read it is returned by every query.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Timeout < 0 || cfg.Attempts < 0 || cfg.MaxCNAMEs < 0 {
		return nil, fmt.Errorf("dnsx: negative timeout, attempts or max_cnames in client config")
	}
	if cfg.UDPSize != 0 && (cfg.UDPSize < dns.MinMsgSize || cfg.UDPSize > dns.MaxMsgSize) {
		return nil, fmt.Errorf("dnsx: udp_size %d is outside %d..%d", cfg.UDPSize, dns.MinMsgSize, dns.MaxMsgSize)
	}
	c := &Client{cfg: cfg}
	if len(cfg.Servers) > 0 {
		c.once.Do(func() { c.servers, c.loadErr = normalizeServers(cfg.Servers) })
		if c.loadErr != nil {
			return nil, c.loadErr
		}
	}
	if c.cfg.UDPSize == 0 {
		c.cfg.UDPSize = 4096
	}
	if c.cfg.MaxCNAMEs == 0 {
		c.cfg.MaxCNAMEs = 8
	}
	return c, nil
}

func normalizeServers(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("dnsx: no DNS servers configured")
	}
	return out, nil
}

// load reads resolv.conf once, when no servers were configured.
func (c *Client) load() ([]string, error) {
	c.once.Do(func() {
		path := c.cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		rc, err := dns.ClientConfigFromFile(path)
		if err != nil {
			c.loadErr = fmt.Errorf("dnsx: reading %s: %w", path, err)
			return
		}
		list := make([]string, 0, len(rc.Servers))
		for _, s := range rc.Servers {
			list = append(list, net.JoinHostPort(s, rc.Port))
		}
		if c.servers, c.loadErr = normalizeServers(list); c.loadErr != nil {
			c.loadErr = fmt.Errorf("dnsx: %s lists no nameserver: %w", path, c.loadErr)
			return
		}
		if c.cfg.Timeout == 0 && rc.Timeout > 0 {
			c.cfg.Timeout = time.Duration(rc.Timeout) * time.Second
		}
		if c.cfg.Attempts == 0 && rc.Attempts > 0 {
			c.cfg.Attempts = rc.Attempts
		}
	})
	return c.servers, c.loadErr
}

func (c *Client) timeout() time.Duration {
	if c.cfg.Timeout > 0 {
		return c.cfg.Timeout
	}
	return 2 * time.Second
}

func (c *Client) attempts() int {
	if c.cfg.Attempts > 0 {
		return c.cfg.Attempts
	}
	return 2
}

// Servers returns the servers the client asks, reading resolv.conf if needed.
func (c *Client) Servers() ([]string, error) { return c.load() }

// Query implements Resolver. When the answer holds a CNAME chain whose end has no record of
// the asked type (a server that did not chase it), the client asks for the chain's target
// itself, up to MaxCNAMEs links, and appends what it finds.
func (c *Client) Query(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	fq := dns.Fqdn(name)
	if err := CheckName(fq); err != nil {
		return nil, &QueryError{Name: fq, Type: qtype, Rcode: -1, Err: err}
	}
	fq = presentation(fq)
	servers, err := c.load()
	if err != nil {
		return nil, &QueryError{Name: fq, Type: qtype, Rcode: -1, Err: err}
	}
	ans, err := c.query(ctx, servers, fq, qtype)
	if err != nil || qtype == dns.TypeCNAME || qtype == dns.TypeANY {
		return ans, err
	}
	seen := []string{dns.CanonicalName(fq)}
	for range c.cfg.MaxCNAMEs {
		chain, rrs, loop := walk(ans)
		if loop {
			return nil, &QueryError{Name: fq, Type: qtype, Rcode: -1, Kind: ErrMalformed, Err: fmt.Errorf("CNAME loop at %s", chain[len(chain)-1])}
		}
		final := chain[len(chain)-1]
		if len(rrs) > 0 || containsFold(seen, final) {
			return ans, nil // an answer, or NODATA at the end of the chain
		}
		seen = append(seen, final)
		next, err := c.query(ctx, servers, final, qtype)
		if err != nil {
			var qe *QueryError
			if errors.As(err, &qe) {
				qe.Name, qe.Err = fq, wrapVia(qe.Err, final)
			}
			return nil, err
		}
		ans.Records = append(ans.Records, next.Records...)
		ans.SOA = next.SOA
		ans.AuthenticatedData = ans.AuthenticatedData && next.AuthenticatedData
	}
	chain, rrs, loop := walk(ans)
	if loop || len(rrs) == 0 && !containsFold(seen, chain[len(chain)-1]) {
		return nil, &QueryError{Name: fq, Type: qtype, Rcode: -1, Kind: ErrMalformed, Err: fmt.Errorf("CNAME chain longer than %d links or looping", c.cfg.MaxCNAMEs)}
	}
	return ans, nil
}

func wrapVia(err error, via string) error {
	if err == nil {
		return fmt.Errorf("via CNAME target %s", via)
	}
	return fmt.Errorf("via CNAME target %s: %w", via, err)
}

// CheckName reports whether name is a syntactically valid DNS name for a query: at most
// 255 octets in wire form and 63 per label, no empty label (RFC 1035 §2.3.4).
func CheckName(name string) error {
	if name == "" || name == "." {
		return nil
	}
	n, ok := dns.IsDomainName(name)
	if !ok || n == 0 {
		return fmt.Errorf("invalid domain name %q", name)
	}
	if len(name) > 254 && strings.HasSuffix(name, ".") || len(name) > 253 && !strings.HasSuffix(name, ".") {
		return fmt.Errorf("domain name longer than 255 octets: %.40q", name)
	}
	return nil
}

// presentation returns name with the octets that a DNS message carries raw but prints
// escaped (non-ASCII, control characters) in the \DDD form, as they come back in answers,
// so that the question and the answer's owner names compare equal.
func presentation(name string) string {
	plain := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f {
			plain = false
			break
		}
	}
	if plain {
		return name
	}
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return name
	}
	out, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return name
	}
	return out
}

// query asks the servers about one name, without chasing CNAMEs.
func (c *Client) query(ctx context.Context, servers []string, name string, qtype uint16) (*Answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	edns := !c.cfg.NoEDNS0
	var last *QueryError
	done := make([]bool, len(servers)) // servers that answered with a permanent refusal
	for range c.attempts() {
		for i, srv := range servers {
			if done[i] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, &QueryError{Name: name, Type: qtype, Rcode: -1, Kind: ErrTemporary, Err: err}
			}
			m.Id = dns.Id()
			m.Extra = nil
			if edns {
				m.SetEdns0(uint16(c.cfg.UDPSize), false)
			}
			resp, err := c.exchange(ctx, srv, m)
			if err != nil {
				qe := &QueryError{Name: name, Type: qtype, Server: srv, Rcode: -1, Kind: ErrTemporary, Err: err}
				if isMalformed(err) {
					qe.Kind = ErrMalformed
				}
				last = worse(last, qe)
				continue
			}
			if err := checkReply(m, resp); err != nil {
				last = worse(last, &QueryError{Name: name, Type: qtype, Server: srv, Rcode: -1, Kind: ErrMalformed, Err: err})
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess:
				a := &Answer{Name: name, Type: qtype, Rcode: resp.Rcode, Records: resp.Answer, AuthenticatedData: resp.AuthenticatedData}
				if len(a.Records) == 0 {
					a.SOA = findSOA(resp.Ns)
				}
				return a, nil
			case dns.RcodeNameError:
				return nil, &QueryError{Name: name, Type: qtype, Server: srv, Rcode: resp.Rcode, SOA: findSOA(resp.Ns), Kind: ErrNXDomain}
			case dns.RcodeServerFailure:
				last = worse(last, &QueryError{Name: name, Type: qtype, Server: srv, Rcode: resp.Rcode, Kind: ErrTemporary})
			case dns.RcodeFormatError:
				if edns && resp.IsEdns0() == nil {
					// RFC 6891 §7: a server that does not know EDNS answers FORMERR;
					// ask it again without the OPT record.
					edns = false
					m.Extra = nil
					m.Id = dns.Id()
					if r2, err := c.exchange(ctx, srv, m); err == nil && checkReply(m, r2) == nil && r2.Rcode == dns.RcodeSuccess {
						a := &Answer{Name: name, Type: qtype, Rcode: r2.Rcode, Records: r2.Answer, AuthenticatedData: r2.AuthenticatedData}
						if len(a.Records) == 0 {
							a.SOA = findSOA(r2.Ns)
						}
						return a, nil
					}
				}
				done[i] = true
				last = worse(last, &QueryError{Name: name, Type: qtype, Server: srv, Rcode: resp.Rcode})
			default: // REFUSED, NOTIMP, ...: this server will not help.
				done[i] = true
				last = worse(last, &QueryError{Name: name, Type: qtype, Server: srv, Rcode: resp.Rcode})
			}
		}
	}
	if last == nil {
		last = &QueryError{Name: name, Type: qtype, Rcode: -1, Err: errors.New("no server could be asked")}
	}
	return nil, last
}

// worse keeps the error that best describes a failure across servers: a temporary one
// wins over a permanent one, since another try may succeed.
func worse(prev, next *QueryError) *QueryError {
	if prev != nil && prev.Kind == ErrTemporary && next.Kind != ErrTemporary {
		return prev
	}
	return next
}

func isMalformed(err error) bool {
	var de *dns.Error
	return errors.As(err, &de)
}

// checkReply verifies that resp answers the question of q (RFC 5452 §9.1 asks the
// resolver to match ID, question name, class and type).
func checkReply(q, resp *dns.Msg) error {
	if !resp.Response {
		return errors.New("reply without the QR bit")
	}
	if len(resp.Question) == 0 && resp.Rcode != dns.RcodeSuccess {
		return nil // some servers drop the question on errors
	}
	if len(resp.Question) != 1 {
		return fmt.Errorf("reply has %d questions", len(resp.Question))
	}
	a, b := resp.Question[0], q.Question[0]
	if !strings.EqualFold(a.Name, b.Name) || a.Qtype != b.Qtype || a.Qclass != b.Qclass {
		return fmt.Errorf("reply to question %s %s, not %s %s", a.Name, dns.TypeToString[a.Qtype], b.Name, dns.TypeToString[b.Qtype])
	}
	return nil
}

func findSOA(ns []dns.RR) *dns.SOA {
	for _, rr := range ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa
		}
	}
	return nil
}

// exchange sends m to srv over UDP and, if the answer is truncated, again over TCP, each
// within the client timeout and the context.
func (c *Client) exchange(ctx context.Context, srv string, m *dns.Msg) (*dns.Msg, error) {
	resp, err := c.exchangeNet(ctx, "udp", srv, m)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	return c.exchangeNet(ctx, "tcp", srv, m)
}

func (c *Client) exchangeNet(ctx context.Context, network, srv string, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	cl := &dns.Client{Net: network, UDPSize: uint16(c.cfg.UDPSize), Timeout: c.timeout()}
	conn, err := cl.DialContext(ctx, srv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	// ExchangeWithConnContext honours deadlines only; close the connection on
	// cancellation so that a cancelled query returns at once.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	resp, _, err := cl.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", network, ctx.Err())
		}
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	return resp, nil
}
