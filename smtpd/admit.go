package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/portcullis-mail/portcullis/dnsx"
	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/internal/sockaddr"
	"github.com/portcullis-mail/portcullis/policy"
)

// admit runs before go-smtp sees a connection: PROXY header, connection limits, the TLS
// handshake of an implicit-TLS port, FCrDNS and the connect stage. go-smtp sends its 220
// greeting as soon as it gets the connection, so a connect-stage rejection must be
// answered here.
func (s *Server) admit(g *gate, raw net.Conn) {
	l := g.l
	name := l.cfg.Name
	if pc, ok := raw.(*proxyproto.Conn); ok && pc.ProxyHeader() == nil {
		// REQUIRE policy: no (or a bad) header within ReadHeaderTimeout.
		s.log.Warn("smtp connection without a valid PROXY header", "listener", name, "peer", pc.Raw().RemoteAddr().String())
		s.m.conn(name, "error")
		raw.Close()
		return
	}
	ip, port := addrPort(raw.RemoteAddr())
	lip, lport := addrPort(raw.LocalAddr())
	now := time.Now()

	if reason := s.acquire(l, ip); reason != "" {
		s.m.conn(name, "limit")
		s.log.Warn("smtp connection refused", "listener", name, "client_ip", ip.String(), "reason", reason)
		reply := fmt.Sprintf("421 4.7.0 %s Too many connections (%s), try again later", s.cfg.Hostname, reason)
		s.recordRefusal(policy.Conn{ID: newID(), Listener: name, IP: ip, Port: port, LocalIP: lip, LocalPort: lport, ConnectedAt: now},
			policy.StageConnect, "connection_limit", reply)
		_ = raw.SetWriteDeadline(now.Add(10 * time.Second))
		fmt.Fprintf(raw, "%s\r\n", reply)
		raw.Close()
		return
	}
	nc := &conn{Conn: raw, cmdTimeout: s.cfg.CommandTimeout, sessionEnd: now.Add(s.cfg.SessionTimeout), lastWrite: now, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	st := &connState{srv: s, l: l, nc: nc, ctx: ctx}
	nc.st = st
	nc.onClose = func() {
		cancel()
		s.release(l, ip, nc)
		s.m.activeAdd(name, -1)
		if f := st.disconnected.Swap(nil); f != nil {
			(*f)()
		}
		if st.tx != nil {
			// Counters are read without st.mu: a session callback may hold it while
			// this Close runs (shutdown); the numbers are for the log only.
			s.log.Info("smtp disconnect", "id", st.tx.Conn.ID, "listener", name, "client_ip", ip.String(),
				"duration_ms", time.Since(now).Milliseconds(), "commands", st.commandsN.Load(),
				"errors", st.errorsN.Load(), "messages", st.messagesN.Load())
		}
	}
	s.mu.Lock()
	s.conns[nc] = struct{}{}
	s.mu.Unlock()
	s.m.activeAdd(name, 1)
	if s.closing.Load() {
		nc.Close()
		return
	}

	pc := policy.Conn{
		ID: newID(), Listener: name,
		IP: ip, Port: port, LocalIP: lip, LocalPort: lport,
		Trusted:     containsAddr(s.trusted, ip) || sockaddr.IsUnix(l.cfg.Addr),
		ConnectedAt: now,
	}
	if l.cfg.Mode == ModeLMTP && !pc.Trusted {
		s.m.conn(name, "rejected")
		s.log.Warn("lmtp connection refused: client not in trusted_networks", "listener", name, "client_ip", ip.String())
		s.refuseAtGreeting(nc, nc, policy.Decision{Verdict: policy.Reject, Reply: replyLMTPUntrusted})
		return
	}
	if r, over := s.limit(ctx, ratelimitConnect, &pc, ""); over {
		s.m.conn(name, "limit")
		s.recordRefusal(pc, policy.StageConnect, "rate_limit", r.String())
		s.refuseAtGreeting(nc, nc, policy.Decision{Verdict: policy.Tempfail, Reply: r})
		return
	}
	var hand net.Conn = nc
	if l.cfg.Mode == ModeSubmissions {
		nc.tlsUp.Store(true)
		tc := tls.Server(nc, s.tlsConfig)
		hctx, hcancel := context.WithTimeout(ctx, s.cfg.HeloTimeout)
		err := tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			s.m.conn(name, "error")
			s.log.Info("smtp TLS handshake failed", "listener", name, "client_ip", ip.String(), "err", err)
			nc.Close()
			return
		}
		setTLS(&pc, tc.ConnectionState())
		if !tc.ConnectionState().DidResume {
			if r, over := s.limit(ctx, ratelimitTLS, &pc, ""); over {
				s.m.conn(name, "limit")
				s.recordRefusal(pc, policy.StageConnect, "rate_limit", r.String())
				s.refuseAtGreeting(tc, nc, policy.Decision{Verdict: policy.Tempfail, Reply: r})
				return
			}
		}
		hand = tc
	}
	if s.deps.Resolver != nil && ip.IsValid() {
		dctx, dcancel := context.WithTimeout(ctx, min(s.cfg.PolicyTimeout, 20*time.Second))
		host, ptrs, err := dnsx.ForwardConfirmed(dctx, s.deps.Resolver, ip)
		dcancel()
		pc.Hostname, pc.PTRNames, pc.DNSError = host, ptrs, err != nil
	}
	st.tx = policy.NewTransaction(pc)
	st.tx.Hostname = s.cfg.Hostname
	if obs, ok := s.deps.Decisions.(ConnectionObserver); ok {
		// a copy: the disconnect runs in Close, beside the session's goroutine
		seen := st.tx.Conn
		obs.Connected(&seen)
		f := func() { obs.Disconnected(&seen) }
		st.disconnected.Store(&f)
	}

	d := st.evaluate(policy.StageConnect)
	st.connectDec = d
	if d.Terminal() {
		if *s.cfg.DelayReject {
			st.pending, st.pendingStage = &d, policy.StageConnect
		} else {
			s.m.conn(name, "rejected")
			st.decided(policy.StageConnect, d, greetingReply(d).String(), nil, "")
			s.refuseAtGreeting(hand, nc, d)
			return
		}
	}
	if st.pending == nil && len(s.deps.Milters) > 0 {
		defer st.closeMilters()
		if md := st.openMilters(); md.Terminal() {
			if *s.cfg.DelayReject {
				st.pending, st.pendingStage = &md, policy.StageConnect
			} else {
				s.m.conn(name, "rejected")
				st.decided(policy.StageConnect, md, greetingReply(md).String(), nil, "")
				s.refuseAtGreeting(hand, nc, md)
				return
			}
		}
	}
	s.m.conn(name, "accepted")
	// The greeting goes out now: HELO/EHLO/LHLO must follow within HeloTimeout.
	nc.mu.Lock()
	nc.heloBy = time.Now().Add(s.cfg.HeloTimeout)
	nc.mu.Unlock()
	if l.cfg.Mode != ModeSubmissions && l.cfg.Mode != ModeLMTP {
		// XCLIENT is taken out beneath go-smtp from now on (xclient.go).
		xc := &xclientState{lineStart: true}
		xc.allowed.Store(netlist.Contains(l.xclient, ip))
		nc.xc = xc
	}
	// go-smtp greets, then serves the connection until it is closed.
	_ = s.newSMTPServer(l, &st.tap).Serve(&oneConn{c: hand, closed: nc.done, addr: l.ln.Addr()})
}

// greetingReply is the reply of a connect-stage rejection: 554, or 421 for a tempfail.
func greetingReply(d policy.Decision) policy.Reply {
	r := replyOf(d)
	r.Code = 554
	if d.Verdict == policy.Tempfail {
		r.Code = 421
	}
	return r
}

// refuseAtGreeting answers a connect-stage rejection instead of the 220 greeting. RFC 5321
// §3.1: after a 554 greeting the server waits for QUIT and answers 503 to anything else;
// a temporary failure is 421 and the server closes (§3.8).
func (s *Server) refuseAtGreeting(c net.Conn, nc *conn, d policy.Decision) {
	defer c.Close()
	r := greetingReply(d)
	if d.Verdict == policy.Tempfail {
		fmt.Fprintf(c, "%s\r\n", r)
		return
	}
	if _, err := fmt.Fprintf(c, "%s\r\n", r); err != nil {
		return
	}
	nc.sessionEnd = time.Now().Add(30 * time.Second)
	br := bufio.NewReaderSize(c, 1024)
	for range 20 {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if strings.EqualFold(strings.TrimSpace(string(line)), "QUIT") {
			fmt.Fprintf(c, "221 2.0.0 Bye\r\n")
			return
		}
		if _, err := fmt.Fprintf(c, "503 5.5.1 %s\r\n", r.Text); err != nil {
			return
		}
	}
}

func setTLS(pc *policy.Conn, cs tls.ConnectionState) {
	pc.TLS = true
	pc.TLSVer = strings.ReplaceAll(tls.VersionName(cs.Version), " ", "")
	pc.TLSCipher = tls.CipherSuiteName(cs.CipherSuite)
}

// limitKey is what the per-address limit counts: the address, or its prefix for IPv6
// (Config.IPv6Prefix, default /64: one host usually owns a whole /64).
func (s *Server) limitKey(ip netip.Addr) netip.Addr {
	if ip.Is6() {
		if p, err := ip.Prefix(s.cfg.IPv6Prefix); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// acquire counts a connection from ip to listener l against the limits: the server's
// total, the listener's own pool and the listener's per-address limit. It returns why
// not when over one of them.
func (s *Server) acquire(l *listener, ip netip.Addr) string {
	ip = s.limitKey(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.active >= l.cfg.MaxConnections {
		return "listener limit"
	}
	if s.total >= s.cfg.MaxConnections {
		return "server limit"
	}
	// Unix socket peers have no address: only the pools apply to them.
	if ip.IsValid() && l.perIP[ip] >= l.cfg.MaxConnectionsPerIP {
		return "per-address limit"
	}
	s.total++
	l.active++
	l.perIP[ip]++
	return ""
}

func (s *Server) release(l *listener, ip netip.Addr, nc *conn) {
	ip = s.limitKey(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	l.active--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	delete(s.conns, nc)
}

func addrPort(a net.Addr) (netip.Addr, int) {
	switch x := a.(type) {
	case *net.TCPAddr:
		ap := x.AddrPort()
		return ap.Addr().Unmap(), int(ap.Port())
	case nil:
		return netip.Addr{}, 0
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, 0
	}
	return ap.Addr().Unmap(), int(ap.Port())
}
