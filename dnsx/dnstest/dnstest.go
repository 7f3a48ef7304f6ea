// Package dnstest runs an in-process DNS server on loopback for tests. It serves zones given
// as Go values or zone-file text over UDP and TCP on the same port, answers NXDOMAIN and
// NODATA as an authoritative server would, follows CNAMEs, expands wildcards (RFC 4592),
// and injects faults per name: delay, SERVFAIL, REFUSED, timeouts (no answer at all),
// truncation (forcing the client to retry over TCP) and malformed replies.
//
//	srv := dnstest.New(t, dnstest.Zone{
//		"example.test.": {"A 192.0.2.1", `TXT "v=spf1 -all"`, "MX 10 mx.example.test."},
//	})
//	r := srv.Resolver() // a dnsx.Resolver asking srv, with a short timeout
//
// Every DNS test in portcullis uses it; no test touches the internet.
package dnstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-mail/portcullis/dnsx"
)

// Zone maps owner names to records in zone-file presentation form without the owner:
// "A 192.0.2.1", "300 TXT \"hello\"", "MX 10 mx.example.test.". Names are made fully
// qualified; relative names inside the record data are not (write them with a dot). A
// record without a TTL gets DefaultTTL.
type Zone map[string][]string

// DefaultTTL is the TTL of records given without one.
const DefaultTTL = 300

// Fault is a failure the server injects for a name.
type Fault int

// The faults.
const (
	NoFault   Fault = iota // answer normally (clears a fault)
	ServFail               // answer SERVFAIL
	Refused                // answer REFUSED
	FormErr                // answer FORMERR
	NotImp                 // answer NOTIMP
	Timeout                // never answer
	Truncate               // answer over UDP with the TC bit and no records; TCP answers normally
	Malformed              // answer with bytes that do not parse as a DNS message
)

var faultNames = [...]string{"none", "servfail", "refused", "formerr", "notimp", "timeout", "truncate", "malformed"}

func (f Fault) String() string {
	if f < 0 || int(f) >= len(faultNames) {
		return fmt.Sprintf("fault(%d)", int(f))
	}
	return faultNames[f]
}

// Server is a running test DNS server (create it with New or Start). Its methods are safe for concurrent use, also while
// queries are in flight.
type Server struct {
	t    testing.TB
	addr string
	udp  *dns.Server
	tcp  *dns.Server
	done chan struct{}

	mu      sync.RWMutex
	rrs     map[string][]dns.RR // by canonical owner name
	faults  map[string]Fault    // by canonical name, "*" for every name
	delays  map[string]time.Duration
	counts  map[string]int // queries by canonical "name TYPE"
	queries atomic.Int64
	tcpq    atomic.Int64
}

// New starts a server on 127.0.0.1 (a random port, UDP and TCP) serving zones, and stops it
// when the test ends. A record that does not parse fails the test.
func New(t testing.TB, zones ...Zone) *Server {
	t.Helper()
	s, err := start(t, zones)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start is New for code that has no testing.TB (examples, tools): it returns errors
// instead of failing a test, methods given records that do not parse panic, and the
// caller must Close the server.
func Start(zones ...Zone) (*Server, error) { return start(nil, zones) }

func start(t testing.TB, zones []Zone) (*Server, error) {
	s := &Server{
		t:      t,
		done:   make(chan struct{}),
		rrs:    make(map[string][]dns.RR),
		faults: make(map[string]Fault),
		delays: make(map[string]time.Duration),
		counts: make(map[string]int),
	}
	for _, z := range zones {
		for name, recs := range z {
			if err := s.add(name, recs...); err != nil {
				return nil, err
			}
		}
	}
	// Bind UDP on a random port, then TCP on the same port; retry if TCP's is taken.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen udp: %w", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("listen tcp on the udp port: %w", err)
	}
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP)}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP)}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				select {
				case <-s.done:
				default:
					s.errorf("dnstest: server stopped: %v", err)
				}
			}
		}()
		<-started
	}
	return s, nil
}

func (s *Server) errorf(format string, args ...any) {
	if s.t != nil {
		s.t.Errorf(format, args...)
	}
}

func (s *Server) fatalf(format string, args ...any) {
	if s.t != nil {
		s.t.Helper()
		s.t.Fatalf(format, args...)
		return
	}
	panic(fmt.Sprintf(format, args...))
}

// Close stops the server; queries in flight (delayed or timing out) end at once. The test's
// cleanup calls it; calling it again is harmless.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.udp.ShutdownContext(ctx)
	_ = s.tcp.ShutdownContext(ctx)
}

// Addr returns the server's address ("127.0.0.1:port"), the same for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Resolver returns a dnsx client asking only this server, with a 300 ms timeout and one
// attempt, so that a Timeout fault costs 300 ms.
func (s *Server) Resolver() dnsx.Resolver {
	return s.ResolverWith(dnsx.ClientConfig{Timeout: 300 * time.Millisecond, Attempts: 1})
}

// ResolverWith returns a dnsx client configured by cfg, with Servers set to this server.
func (s *Server) ResolverWith(cfg dnsx.ClientConfig) *dnsx.Client {
	cfg.Servers = []string{s.addr}
	c, err := dnsx.NewClient(cfg)
	if err != nil {
		s.fatalf("dnstest: %v", err)
	}
	return c
}

// NetResolver returns a standard library resolver that asks this server, for code that
// takes a *net.Resolver or its Lookup functions (go-msgauth's LookupTXT, for one).
func (s *Server) NetResolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr)
		},
	}
}

// Set replaces the records of name with records (zone-file form without the owner, as in
// Zone). With no records, name no longer exists. A record that does not parse fails the
// test.
func (s *Server) Set(name string, records ...string) {
	rrs, err := parse(name, records)
	if err != nil {
		s.fatalf("dnstest: %v", err)
	}
	key := dns.CanonicalName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(rrs) == 0 {
		delete(s.rrs, key)
		return
	}
	s.rrs[key] = rrs
}

// Add adds records to name (zone-file form without the owner).
func (s *Server) Add(name string, records ...string) {
	if err := s.add(name, records...); err != nil {
		s.fatalf("dnstest: %v", err)
	}
}

func (s *Server) add(name string, records ...string) error {
	rrs, err := parse(name, records)
	if err != nil {
		return err
	}
	s.AddRR(rrs...)
	return nil
}

// AddRR adds ready-made records (owner names taken from each record's header).
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		key := dns.CanonicalName(rr.Header().Name)
		s.rrs[key] = append(s.rrs[key], rr)
	}
}

// LoadZone adds the records of a zone file (text in RFC 1035 §5 master file format;
// $ORIGIN and $TTL work, relative names are relative to origin). A parse error fails the
// test.
func (s *Server) LoadZone(origin, text string) {
	zp := dns.NewZoneParser(strings.NewReader(text), dns.Fqdn(origin), "")
	zp.SetDefaultTTL(DefaultTTL)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		s.fatalf("dnstest: zone %s: %v", origin, err)
	}
	s.AddRR(rrs...)
}

// Fail makes every query for name (any type) fail with f; NoFault clears it. The name "*"
// applies to every name without a fault of its own.
func (s *Server) Fail(name string, f Fault) {
	key := faultKey(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == NoFault {
		delete(s.faults, key)
		return
	}
	s.faults[key] = f
}

// Delay makes the server wait d before answering queries for name ("*" for every name
// without a delay of its own); 0 clears it.
func (s *Server) Delay(name string, d time.Duration) {
	key := faultKey(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.delays, key)
		return
	}
	s.delays[key] = d
}

func faultKey(name string) string {
	if name == "*" {
		return name
	}
	return dns.CanonicalName(name)
}

// Queries returns the number of queries received so far (UDP and TCP).
func (s *Server) Queries() int64 { return s.queries.Load() }

// TCPQueries returns the number of queries received over TCP.
func (s *Server) TCPQueries() int64 { return s.tcpq.Load() }

// QueriesFor returns the number of queries received for name with type qtype
// (dns.TypeA, ...).
func (s *Server) QueriesFor(name string, qtype uint16) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.counts[countKey(dns.CanonicalName(name), qtype)]
}

func countKey(name string, qtype uint16) string {
	return name + " " + dns.Type(qtype).String()
}

func parse(name string, records []string) ([]dns.RR, error) {
	owner := dns.Fqdn(name)
	rrs := make([]dns.RR, 0, len(records))
	for _, rec := range records {
		rr, err := dns.NewRR("$TTL " + fmt.Sprint(DefaultTTL) + "\n" + owner + " " + rec)
		if err != nil {
			return nil, fmt.Errorf("record %q of %s: %w", rec, owner, err)
		}
		if rr == nil {
			return nil, fmt.Errorf("record %q of %s is empty", rec, owner)
		}
		rrs = append(rrs, rr)
	}
	return rrs, nil
}

func (s *Server) serveUDP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, false) }
func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, true) }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg, tcp bool) {
	s.queries.Add(1)
	if tcp {
		s.tcpq.Add(1)
	}
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)

	s.mu.Lock()
	s.counts[countKey(name, q.Qtype)]++
	fault, ok := s.faults[name]
	if !ok {
		fault = s.faults["*"]
	}
	delay, ok := s.delays[name]
	if !ok {
		delay = s.delays["*"]
	}
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	switch fault {
	case Timeout:
		return
	case ServFail:
		m.Rcode = dns.RcodeServerFailure
	case Refused:
		m.Rcode = dns.RcodeRefused
	case FormErr:
		m.Rcode = dns.RcodeFormatError
	case NotImp:
		m.Rcode = dns.RcodeNotImplemented
	case Malformed:
		// A header claiming one answer record that is not there.
		b := []byte{byte(req.Id >> 8), byte(req.Id), 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0}
		_, _ = w.Write(b)
		return
	case Truncate:
		if !tcp {
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		s.answer(m, name, q.Qtype)
	default:
		s.answer(m, name, q.Qtype)
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(4096, false)
	}
	if !tcp {
		// RFC 1035 §4.2.1 and RFC 6891 §6.2.5: an answer larger than the client's
		// buffer is truncated and the client retries over TCP.
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer fills m as an authoritative server of every name it holds would.
func (s *Server) answer(m *dns.Msg, qname string, qtype uint16) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	name := qname
	var seen []string
	for range 16 {
		rrs, exists := s.lookup(name)
		if !exists {
			// Also at the end of a CNAME chain: the rcode is that of the last name
			// (RFC 6604 §2.1).
			m.Rcode = dns.RcodeNameError
			m.Ns = s.soaFor(name)
			return
		}
		var cname *dns.CNAME
		matched := false
		for _, rr := range rrs {
			rr = withOwner(rr, name)
			switch {
			case rr.Header().Rrtype == qtype || qtype == dns.TypeANY:
				m.Answer = append(m.Answer, rr)
				matched = true
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if matched || cname == nil {
			if !matched {
				m.Ns = s.soaFor(name) // NODATA (RFC 2308 §2.2)
			}
			return
		}
		// RFC 1034 §4.3.2 step 3a: add the CNAME and go on with its target.
		m.Answer = append(m.Answer, cname)
		seen = append(seen, name)
		name = dns.CanonicalName(cname.Target)
		for _, n := range seen {
			if n == name {
				return // a loop: the chain so far is the answer
			}
		}
	}
}

// lookup returns the records of name and whether name exists (it has records, or is an
// empty non-terminal: a name below it has records). A missing name is looked up as a
// wildcard at its closest encloser (RFC 4592 §3.3.1).
func (s *Server) lookup(name string) ([]dns.RR, bool) {
	if rrs, ok := s.rrs[name]; ok {
		return rrs, true
	}
	if s.hasBelow(name) {
		return nil, true
	}
	// Find the closest encloser and try its wildcard.
	for n := name; ; {
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			break
		}
		n = n[i+1:]
		_, exists := s.rrs[n]
		if !exists && !s.hasBelow(n) {
			continue
		}
		if rrs, ok := s.rrs["*."+n]; ok {
			return rrs, true
		}
		break
	}
	return nil, false
}

func (s *Server) hasBelow(name string) bool {
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for k := range s.rrs {
		if strings.HasSuffix(k, suffix) && k != name {
			return true
		}
	}
	return false
}

// soaFor returns the SOA of the zone enclosing name, with its TTL lowered to its minimum
// field (RFC 2308 §3), or nothing when no SOA encloses it.
func (s *Server) soaFor(name string) []dns.RR {
	for n := name; ; {
		for _, rr := range s.rrs[n] {
			if soa, ok := rr.(*dns.SOA); ok {
				c := dns.Copy(soa).(*dns.SOA)
				c.Hdr.Ttl = min(c.Hdr.Ttl, c.Minttl)
				return []dns.RR{c}
			}
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			return nil
		}
		n = n[i+1:]
	}
}

// withOwner returns rr with the owner name set to name (for wildcard synthesis).
func withOwner(rr dns.RR, name string) dns.RR {
	if strings.EqualFold(rr.Header().Name, name) {
		return rr
	}
	c := dns.Copy(rr)
	c.Header().Name = name
	return c
}
