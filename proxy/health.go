package proxy

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// health checks each back-end address every Config.HealthInterval: connect, a PROXY v2
// LOCAL header (the connection is the proxy's own, proxy protocol §2.2), TLS if the
// back-end has it, and a greeting that says the server is ready. A failed check (or a
// failed session connect) marks the address down: logins for it get the temporary
// error at once rather than after ConnectTimeout. The next successful check brings it
// back.
type health struct {
	down map[string]*atomic.Bool // by address; fixed after newHealth
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// target is one address to check and how its greeting reads when ready.
type target struct {
	host, addr string
	tls        bool
	noHeader   bool // LMTP listeners take no PROXY header
	ready      func(r *bufio.Reader) error
}

// firstLine is a ready check: the greeting line starts with prefix.
func firstLine(prefix string) func(r *bufio.Reader) error {
	return func(r *bufio.Reader) error {
		line, err := readLine(r, 64<<10)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, prefix) {
			return &backendError{line: line}
		}
		return nil
	}
}

func newHealth(s *Server) *health {
	h := &health{down: map[string]*atomic.Bool{}, done: make(chan struct{})}
	if s.cfg.HealthInterval < 0 {
		// No checks: nothing would bring an address marked down back, so none is
		// tracked and every login tries its back-end.
		return h
	}
	var targets []target
	for host, b := range s.cfg.Backends {
		for _, t := range []target{
			{host: host, addr: b.IMAP, tls: true, ready: firstLine("* OK")},
			{host: host, addr: b.POP3, tls: true, ready: firstLine("+OK")},
			{host: host, addr: b.LMTP, noHeader: true, ready: firstLine("220")},
			{host: host, addr: b.ManageSieve, ready: func(r *bufio.Reader) error {
				lines, err := readSieveGreeting(r)
				if err == nil {
					s.sieveCaps.Store(backendCaps(lines))
				}
				return err
			}},
		} {
			if t.addr == "" || h.down[t.addr] != nil {
				continue
			}
			h.down[t.addr] = new(atomic.Bool)
			targets = append(targets, t)
		}
	}
	for _, t := range targets {
		h.wg.Add(1)
		go h.watch(s, t)
	}
	return h
}

// up says whether addr passed its last check (unknown addresses are up).
func (h *health) up(addr string) bool {
	d := h.down[addr]
	return d == nil || !d.Load()
}

// downAddrs lists the addresses down, sorted.
func (h *health) downAddrs() []string {
	var out []string
	for a, d := range h.down {
		if d.Load() {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// failed marks addr down after a session could not reach it.
func (h *health) failed(addr string) {
	if d := h.down[addr]; d != nil {
		d.Store(true)
	}
}

func (h *health) stop() {
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
}

func (h *health) watch(s *Server, t target) {
	defer h.wg.Done()
	tick := time.NewTicker(s.cfg.HealthInterval)
	defer tick.Stop()
	for {
		err := h.check(s, t)
		was := h.down[t.addr].Swap(err != nil)
		switch {
		case err != nil && !was:
			s.log.Warn("proxy: back-end down", "backend", t.host, "addr", t.addr, "err", err)
		case err == nil && was:
			s.log.Info("proxy: back-end up again", "backend", t.host, "addr", t.addr)
		}
		select {
		case <-h.done:
			return
		case <-tick.C:
		}
	}
}

func (h *health) check(s *Server, t target) error {
	timeout := min(s.cfg.ConnectTimeout, max(s.cfg.HealthInterval, time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() { // Close ends a check at once
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", t.addr)
	}
	hdr := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}
	if t.noHeader {
		hdr = nil
	}
	conn, err := s.connect(ctx, t.host, t.addr, dial, t.tls, hdr)
	if err != nil {
		return err
	}
	defer conn.Close()
	context.AfterFunc(ctx, func() { conn.Close() })
	return t.ready(bufio.NewReaderSize(conn, 4096))
}
