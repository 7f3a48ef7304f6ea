package main

// Issue 15's acceptance soak: the SMTP, IMAP and HTTP floods of the other e2e tests at
// once, for a bounded time, against the real binary (built without -race), while
// legitimate clients keep sending and reading mail. Legitimate SMTP and IMAP must keep
// being served, the server's peak RSS must stay under memory_limit, and every message
// answered 250 (legitimate or hostile) must end up in the mailbox exactly once.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/spool"
)

const (
	soakFor         = 35 * time.Second // the load
	soakMemoryLimit = 512 << 20        // memory_limit in the config
	soakPlanted     = 6                // large messages in the mailbox before the start
	soakPlantSize   = 16 << 20
	soakLegitWait   = 20 * time.Second // a legitimate SMTP transaction slower than this hung
	soakRoundWait   = 40 * time.Second // an IMAP round (FETCH and SEARCH may wait 30s for memory)
)

// soakConfig is the config of TestE2ESoak: e2eLimitsConfig's MX (300 connections, 20 per
// address), submission and LMTP (unix socket) listeners with the default rules, a low
// max_data_memory, short helo and command timeouts (so that the floods are cut and come
// back within the soak), IMAP with a small fetch_memory, the HTTP listener, and
// memory_limit.
func soakConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := e2eLimitsConfig(t, dir, "  max_message_size: 17MiB\n  max_data_memory: 64MiB\n  helo_timeout: 10s\n  command_timeout: 10s\n"+
		fmt.Sprintf("memory_limit: %d\n", soakMemoryLimit))
	b := mustRead(t, cfg)
	for old, repl := range map[string]string{
		`http: { addr: "" }`: `http: { addr: "127.0.0.1:0" }`,
		`imap: { addr: "" }`: `imap: { addr: "127.0.0.1:0", login_timeout: 10s, fetch_memory: 64MiB }`,
	} {
		require.Contains(t, string(b), old)
		b = bytes.Replace(b, []byte(old), []byte(repl), 1)
	}
	require.NoError(t, os.WriteFile(cfg, b, 0o644))
	return cfg
}

// soakCounts counts outcomes by name.
type soakCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func newSoakCounts() *soakCounts { return &soakCounts{m: map[string]int{}} }

func (c *soakCounts) add(k string) {
	c.mu.Lock()
	c.m[k]++
	c.mu.Unlock()
}

func (c *soakCounts) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

// sum is the total of the counts whose name starts with prefix.
func (c *soakCounts) sum(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func (c *soakCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.m))
	for k := range c.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n    %6d  %s", c.m[k], k)
	}
	return b.String()
}

// soakTimes collects durations (latencies, how long a connection was held).
type soakTimes struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *soakTimes) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

func (s *soakTimes) String() string {
	s.mu.Lock()
	d := slices.Clone(s.d)
	s.mu.Unlock()
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))].Round(time.Millisecond) }
	return fmt.Sprintf("n=%d median %v p95 %v max %v", len(d), q(0.5), q(0.95), d[len(d)-1].Round(time.Millisecond))
}

// soakConns holds the hostile clients' connections, so that they can all be closed
// when the load stops, whatever each client is blocked on.
type soakConns struct {
	mu     sync.Mutex
	m      map[net.Conn]bool
	closed bool
}

// add registers c; after closeAll it closes c and returns false.
func (s *soakConns) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.m[c] = true
	return true
}

func (s *soakConns) done(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
	c.Close()
}

func (s *soakConns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.m {
		c.Close()
	}
}

// soakLedger records what became of every message sent, by Message-ID.
type soakLedger struct {
	mu       sync.Mutex
	accepted map[string]string // answered 250 (or delivered by LMTP): who sent it
	unsure   map[string]string // the connection broke before the final reply: kept at most once
	refused  map[string]string // answered 4xx or 5xx: never delivered (unless a retry got 250)
}

func (l *soakLedger) note(id, who string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch code := smtpCode(err); {
	case code == 250:
		l.accepted[id] = who
		delete(l.refused, id)
	case code == 0:
		l.unsure[id] = who
	default:
		if _, ok := l.accepted[id]; !ok {
			l.refused[id] = who
		}
	}
}

// soakSMTP opens an SMTP session on addr from src: EHLO, or STARTTLS and AUTH as user
// when tlsConf is set.
func soakSMTP(addr, src string, deadline time.Time, tlsConf *tls.Config, user, pass string) (*smtp.Client, net.Conn, error) {
	conn, err := dialFrom(addr, src, deadline)
	if err != nil {
		return nil, nil, err
	}
	var c *smtp.Client
	if tlsConf != nil {
		if c, err = smtp.NewClientStartTLS(conn, tlsConf); err == nil {
			err = c.Auth(sasl.NewPlainClient("", user, pass))
		}
	} else {
		c = smtp.NewClient(conn)
		err = c.Hello("client" + strings.ReplaceAll(src, ".", "-") + ".example.net")
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return c, conn, nil
}

// sleepCtx sleeps for d and says whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

var (
	soakReasonRe = regexp.MustCompile(`\(([^)]*)\)`)
	soakMsgIDRe  = regexp.MustCompile(`(?i)message-id:\s*<([^>]+)>`)
	soakDigitsRe = regexp.MustCompile(`[0-9]+(\.[0-9]+)?(ms|s|m)?`)
)

// soakReply shortens a server's reply line to what identifies it ("421 4.7.0 (listener
// limit)", "* BYE Too many connections from your address").
func soakReply(l string) string {
	l = strings.TrimSpace(l)
	if l == "" {
		return "closed"
	}
	if strings.HasPrefix(l, "421 4.7.0") {
		if m := soakReasonRe.FindStringSubmatch(l); m != nil {
			return "421 4.7.0 (" + m[1] + ")"
		}
	}
	if len(l) > 3 && l[3] == ' ' && l[0] >= '2' && l[0] <= '5' {
		if len(l) > 9 && l[5] == '.' {
			return l[:9] // code and enhanced code
		}
		return l[:3]
	}
	return soakDigitsRe.ReplaceAllString(l, "N")
}

// TestE2ESoak: for soakFor, at once,
//   - SMTP: slowloris connections from 16 addresses filling the MX pool, clients dripping
//     a command line, and four sessions sending 8–16 MiB messages to the postmaster;
//   - IMAP: 200 connections from 4 addresses that never log in, kept alive with NOOP and
//     coming back when closed; four sessions of the postmaster sending FETCH bombs
//     (one byte of every message, whole large messages, 200 sections, 3,000
//     HEADER.FIELDS names);
//   - HTTP: 40 slow clients on /metrics;
//
// while legitimate clients, each from an address of its own, submit small messages
// (STARTTLS, AUTH, one connection each), send over an MX session opened before the
// flood (a full pool refuses new connections to everyone, by design), deliver over LMTP,
// read the mailbox over IMAP (LOGIN, SELECT, SEARCH, FETCH, each round a new
// connection) and scrape /metrics.
func TestE2ESoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of mixed hostile load")
	}
	began := time.Now()
	dir := t.TempDir()
	plantLarge(t, dir, soakPlanted, soakPlantSize)
	srv := startPlainServer(t, soakConfig(t, dir), "mx", "submission", "lmtp", "imap", "http")
	pass := postmasterPassword(t, srv)
	pid := srv.cmd.Process.Pid
	addr := srv.addrs
	const pm = "postmaster@example.test"
	tlsConf := &tls.Config{InsecureSkipVerify: true}

	var (
		hostile  = &soakConns{m: map[net.Conn]bool{}}
		attacks  = newSoakCounts() // outcomes of the attacks
		legit    = newSoakCounts() // outcomes of the legitimate clients
		failures []string          // what went wrong for a legitimate client
		failMu   sync.Mutex
		ledger   = &soakLedger{accepted: map[string]string{}, unsure: map[string]string{}, refused: map[string]string{}}
		// latencies and holding times
		subLat, mxLat, lmtpLat, imapLat, scrapeLat          soakTimes
		imapLoginLat, imapSearchLat                         soakTimes
		slowHeld, dripHeld, imapFloodHeld, httpHeld, bigLat soakTimes
		bombTimes                                           = map[string]*soakTimes{} // filled before the load
	)
	count := func(who string, m map[string]string) int {
		n := 0
		for _, w := range m {
			if w == who {
				n++
			}
		}
		return n
	}
	fail := func(format string, args ...any) {
		failMu.Lock()
		failures = append(failures, fmt.Sprintf("%6.1fs ", time.Since(began).Seconds())+fmt.Sprintf(format, args...))
		failMu.Unlock()
	}

	// Before the load: the bombers log in (each login costs argon2's 64 MiB for a moment)
	// and select the mailbox, which indexes the planted messages; the hostile large
	// senders and the legitimate MX client open their sessions.
	bombers := make([]*imapConn, 4)
	for i := range bombers {
		bombers[i] = loginIMAP(t, addr["imap"], pass)
		_, st, err := bombers[i].cmd("SELECT INBOX")
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(st, "OK"), st)
		require.True(t, hostile.add(bombers[i].conn))
	}
	bigClients := make([]*smtp.Client, 4)
	for i := range bigClients {
		c, conn, err := soakSMTP(addr["mx"], "127.0.0.28", time.Now().Add(soakFor+time.Minute), nil, "", "")
		require.NoError(t, err)
		require.True(t, hostile.add(conn))
		bigClients[i] = c
	}
	mxClient, mxConn, err := soakSMTP(addr["mx"], "127.0.0.203", time.Now().Add(soakFor+time.Minute), nil, "", "")
	require.NoError(t, err)
	defer mxClient.Close()
	lmtpClient, err := lmtp.New(lmtp.Config{LocalName: "front.example.test"})
	require.NoError(t, err)
	defer lmtpClient.Close()

	// The FETCH bombs, and where their times go.
	var items200, names3000 []string
	for i := range 200 {
		items200 = append(items200, fmt.Sprintf("BODY.PEEK[1]<%d.1>", i*100))
	}
	for i := range 3000 {
		names3000 = append(names3000, fmt.Sprintf("X-Pad-%d", i))
	}
	bombs := [][]string{
		{"1:* (BODY.PEEK[]<0.1>)", "1:2 (BODY.PEEK[])"},
		{"1:* (BODY.PEEK[]<0.1>)", "1:2 (BODY.PEEK[])"},
		{"1:* (" + strings.Join(items200, " ") + ")"},
		{"1:* (BODY.PEEK[HEADER.FIELDS (" + strings.Join(names3000, " ") + ")])"},
	}
	bombName := func(item string) string {
		switch {
		case len(item) > 10000:
			return "3000 HEADER.FIELDS names"
		case len(item) > 1000:
			return "200 sections"
		}
		return item
	}
	for _, b := range bombs {
		for _, item := range b {
			bombTimes[bombName(item)] = &soakTimes{}
		}
	}

	baseline := procStatus(t, pid, "VmRSS")
	loadEnd := time.Now().Add(soakFor)
	ctx, cancel := context.WithDeadline(context.Background(), loadEnd)
	defer cancel()
	var wg sync.WaitGroup
	running := newSoakCounts() // workers still running, by name
	spawn := func(name string, n int, f func(i int)) {
		for i := range n {
			wg.Add(1)
			running.add(name)
			go func() {
				defer wg.Done()
				defer func() { running.mu.Lock(); running.m[name]--; running.mu.Unlock() }()
				f(i)
			}()
		}
	}

	// --- RSS, every 150 ms.
	var rssMu sync.Mutex
	var rss []int64
	spawn("rss", 1, func(int) {
		for ctx.Err() == nil {
			if v, err := readProcStatus(pid, "VmRSS"); err == nil {
				rssMu.Lock()
				rss = append(rss, v)
				rssMu.Unlock()
			}
			sleepCtx(ctx, 150*time.Millisecond)
		}
	})

	// --- Legitimate clients. Every SMTP transaction must get 250 within soakLegitWait:
	// none of the server's tempfails applies to them (the data stage's wait for memory
	// ends with 452 only after policy_timeout, 1m; the submission pool is not flooded;
	// no SPF lookup or password failure is involved), so a 4xx is a failure too.
	// Submission: a connection per message, STARTTLS, AUTH, one message.
	spawn("legit submission", 1, func(int) {
		for n := 0; ctx.Err() == nil; n++ {
			subject := fmt.Sprintf("soak-sub-%d", n)
			start := time.Now()
			c, _, err := soakSMTP(addr["submission"], "127.0.0.202", start.Add(soakLegitWait), tlsConf, pm, pass)
			stage := "connect"
			if err == nil {
				stage, err = e2eSend(c, pm, pm, e2eMessage(pm, subject, "legitimate submission"))
				ledger.note(subject+"@e2e.example", "submission", err)
				if err == nil {
					_ = c.Quit()
				}
				c.Close()
			}
			legit.add(fmt.Sprintf("submission %d", smtpCode(err)))
			if err != nil {
				fail("submission %s at %s after %v: %v", subject, stage, time.Since(start).Round(time.Millisecond), err)
			} else {
				subLat.add(time.Since(start))
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	})
	// MX: one session for the whole soak, as an MTA caching its connection.
	spawn("legit mx", 1, func(int) {
		for n := 0; ctx.Err() == nil; n++ {
			subject := fmt.Sprintf("soak-mx-%d", n)
			start := time.Now()
			_ = mxConn.SetDeadline(start.Add(soakLegitWait))
			stage, err := e2eSend(mxClient, "friend@example.net", pm, e2eMessage("friend@example.net", subject, "legitimate mail from outside"))
			ledger.note(subject+"@e2e.example", "mx", err)
			legit.add(fmt.Sprintf("mx %d", smtpCode(err)))
			if err != nil {
				fail("mx %s at %s after %v: %v", subject, stage, time.Since(start).Round(time.Millisecond), err)
				return // the session cannot be trusted any more
			}
			mxLat.add(time.Since(start))
			sleepCtx(ctx, 200*time.Millisecond)
		}
	})
	// LMTP, over the unix socket: one message a second.
	spawn("legit lmtp", 1, func(int) {
		for n := 0; ctx.Err() == nil; n++ {
			subject := fmt.Sprintf("soak-lmtp-%d", n)
			msg := []byte(e2eMessage("front@example.net", subject, "over lmtp"))
			start := time.Now()
			dctx, dcancel := context.WithTimeout(context.Background(), soakLegitWait)
			res, err := lmtpClient.Deliver(dctx, "lmtp:unix:"+addr["lmtp"], "front@example.net", []string{pm}, bytes.NewReader(msg), int64(len(msg)))
			dcancel()
			if err == nil && len(res) == 1 && res[0].Status == lmtp.Delivered {
				ledger.note(subject+"@e2e.example", "lmtp", nil)
				legit.add("lmtp delivered")
				lmtpLat.add(time.Since(start))
			} else {
				ledger.mu.Lock()
				ledger.unsure[subject+"@e2e.example"] = "lmtp"
				ledger.mu.Unlock()
				fail("lmtp %s after %v: %v %+v", subject, time.Since(start).Round(time.Millisecond), err, res)
			}
			sleepCtx(ctx, time.Second)
		}
	})
	// IMAP: each round a new connection: STARTTLS, LOGIN, SELECT, SEARCH for the subjects
	// of the legitimate messages, FETCH the subjects of the last three found.
	var lastFound, lastAccepted int
	spawn("legit imap", 1, func(int) {
		for ctx.Err() == nil {
			ledger.mu.Lock()
			accepted := len(ledger.accepted) - count("big", ledger.accepted)
			ledger.mu.Unlock()
			start := time.Now()
			found, step, err := soakIMAPRound(addr["imap"], "127.0.0.201", pass, start.Add(soakRoundWait), &imapLoginLat, &imapSearchLat)
			if err != nil {
				legit.add("imap round failed")
				fail("imap round at %s after %v: %v", step, time.Since(start).Round(time.Millisecond), err)
			} else {
				legit.add("imap round ok")
				imapLat.add(time.Since(start))
				lastFound, lastAccepted = found, accepted
			}
			sleepCtx(ctx, 500*time.Millisecond)
		}
	})
	// /metrics every two seconds.
	spawn("legit scrape", 1, func(int) {
		// A connection per scrape: each one queues behind the slow clients.
		hc := &http.Client{Timeout: soakRoundWait, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 205)}}).DialContext,
		}}
		for sleepCtx(ctx, 2*time.Second) {
			start := time.Now()
			resp, err := hc.Get("http://" + addr["http"] + "/metrics")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && bytes.Contains(body, []byte("process_open_fds")) {
					legit.add("scrape 200")
					scrapeLat.add(time.Since(start))
					continue
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			legit.add("scrape failed")
			fail("scrape after %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
	})
	// A new MX connection now and then: refused while the flood holds the pool (not a
	// failure: that is what a full pool does; the MX client above keeps its session).
	spawn("mx probe", 1, func(int) {
		for sleepCtx(ctx, 2*time.Second) {
			c, err := dialFrom(addr["mx"], "127.0.0.204", time.Now().Add(10*time.Second))
			if err != nil {
				attacks.add("mx new-connection probe: " + err.Error())
				continue
			}
			l, _ := bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("QUIT\r\n"))
			c.Close()
			attacks.add("mx new-connection probe: " + soakReply(l))
		}
	})

	// --- SMTP floods.
	// Hostile large messages: four sessions to the postmaster, each answer counted.
	spawn("smtp big", len(bigClients), func(k int) {
		c := bigClients[k]
		for n := 0; ctx.Err() == nil; n++ {
			if c == nil {
				cl, conn, err := soakSMTP(addr["mx"], "127.0.0.28", loadEnd.Add(time.Minute), nil, "", "")
				if err != nil {
					attacks.add("smtp big: reconnect " + soakReply(smtpMessage(err)))
					sleepCtx(ctx, 500*time.Millisecond)
					continue
				}
				if !hostile.add(conn) {
					return
				}
				c = cl
			}
			id := 1000*(k+1) + n
			msg := bigMessage(id, (8+4*(n%3))<<20)
			start := time.Now()
			_, err := e2eSend(c, fmt.Sprintf("sender%d@example.net", id), pm, string(msg))
			ledger.note(fmt.Sprintf("big%d@e2e.example", id), "big", err)
			code := smtpCode(err)
			switch {
			case code == 250:
				attacks.add("smtp big: 250")
				bigLat.add(time.Since(start))
			case code != 0:
				attacks.add("smtp big: " + soakReply(smtpMessage(err)))
				if c.Reset() != nil {
					c.Close()
					c = nil
				}
			default:
				if ctx.Err() == nil {
					attacks.add("smtp big: connection lost")
				}
				c.Close()
				c = nil
			}
		}
	})
	// Drip-fed command lines: EHLO, then MAIL FROM a byte every 300 ms.
	spawn("smtp drip", 10, func(i int) {
		src := fmt.Sprintf("127.0.0.%d", 26+i%2)
		for ctx.Err() == nil {
			c, err := dialFrom(addr["mx"], src, loadEnd.Add(time.Minute))
			if err != nil {
				attacks.add("smtp drip: " + err.Error())
				sleepCtx(ctx, 500*time.Millisecond)
				continue
			}
			if !hostile.add(c) {
				return
			}
			br := bufio.NewReader(c)
			greet, _ := br.ReadString('\n')
			if !strings.HasPrefix(greet, "220") {
				if ctx.Err() == nil {
					attacks.add("smtp drip: " + soakReply(greet))
				}
				hostile.done(c)
				sleepCtx(ctx, 500*time.Millisecond)
				continue
			}
			_, _ = c.Write([]byte("EHLO drip.example.net\r\n"))
			for {
				l, err := br.ReadString('\n')
				if err != nil || strings.HasPrefix(l, "250 ") {
					break
				}
			}
			start := time.Now()
			stop := make(chan struct{})
			go func() {
				partial := "MAIL FROM:<drip@example.net>"
				for j := 0; ; j++ {
					b := " "
					if j < len(partial) {
						b = partial[j : j+1]
					}
					if _, err := c.Write([]byte(b)); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
				}
			}()
			rest, _ := io.ReadAll(br)
			close(stop)
			if ctx.Err() == nil {
				attacks.add("smtp drip: cut with " + soakReply(string(rest)))
				dripHeld.add(time.Since(start))
			}
			hostile.done(c)
		}
	})
	// Slowloris: 16 addresses, 20 connections each (the per-address limit) against a pool
	// of 300; each sends one byte after the greeting and comes back when cut. They start
	// a second after the others, which have their sessions by then.
	spawn("smtp slowloris", 16*20, func(i int) {
		src := fmt.Sprintf("127.0.0.%d", 10+i/20)
		if !sleepCtx(ctx, time.Second) {
			return
		}
		for ctx.Err() == nil {
			c, err := dialFrom(addr["mx"], src, loadEnd.Add(time.Minute))
			if err != nil {
				attacks.add("smtp slowloris: " + err.Error())
				sleepCtx(ctx, 250*time.Millisecond)
				continue
			}
			if !hostile.add(c) {
				return
			}
			br := bufio.NewReader(c)
			greet, _ := br.ReadString('\n')
			if !strings.HasPrefix(greet, "220") {
				if ctx.Err() == nil {
					attacks.add("smtp slowloris: refused " + soakReply(greet))
				}
				hostile.done(c)
				sleepCtx(ctx, 250*time.Millisecond)
				continue
			}
			attacks.add("smtp slowloris: 220, held")
			start := time.Now()
			_, _ = c.Write([]byte("E"))
			rest, _ := io.ReadAll(br)
			if ctx.Err() == nil {
				attacks.add("smtp slowloris: cut with " + soakReply(string(rest)))
				slowHeld.add(time.Since(start))
			}
			hostile.done(c)
		}
	})

	// --- IMAP floods.
	// 200 connections from 4 addresses that never log in, NOOP every 500 ms, back 100 ms
	// after they are closed.
	spawn("imap flood", 4*50, func(i int) {
		src := fmt.Sprintf("127.0.0.%d", 30+i/50)
		for ctx.Err() == nil {
			ic, greet, err := dialIMAPFrom(addr["imap"], src)
			if err != nil {
				if ctx.Err() == nil {
					attacks.add("imap flood: " + soakReply(greet) + " " + err.Error())
				}
				if ic != nil {
					ic.close()
				}
				sleepCtx(ctx, 200*time.Millisecond)
				continue
			}
			if !hostile.add(ic.conn) {
				return
			}
			if !strings.HasPrefix(greet, "* OK") {
				if ctx.Err() == nil {
					attacks.add("imap flood: refused " + soakReply(greet))
				}
				hostile.done(ic.conn)
				sleepCtx(ctx, 200*time.Millisecond)
				continue
			}
			attacks.add("imap flood: * OK, held")
			start := time.Now()
			for sleepCtx(ctx, 500*time.Millisecond) {
				lines, _, err := ic.cmd("NOOP")
				if err != nil {
					why := "closed"
					if len(lines) > 0 && strings.HasPrefix(lines[len(lines)-1], "* BYE") {
						why = soakReply(lines[len(lines)-1])
					}
					attacks.add("imap flood: " + why)
					imapFloodHeld.add(time.Since(start))
					break
				}
			}
			hostile.done(ic.conn)
			sleepCtx(ctx, 100*time.Millisecond)
		}
	})
	// FETCH bombs on the sessions logged in above.
	spawn("imap bombs", len(bombers), func(k int) {
		ic := bombers[k]
		for j := 0; ctx.Err() == nil; j++ {
			item := bombs[k][j%len(bombs[k])]
			_ = ic.conn.SetDeadline(time.Now().Add(soakRoundWait))
			start := time.Now()
			_, st, err := ic.cmd("FETCH %s", item)
			name := bombName(item)
			if err != nil {
				if ctx.Err() == nil {
					attacks.add("imap FETCH " + name + ": " + err.Error())
				}
				return
			}
			bombTimes[name].add(time.Since(start))
			if code, _, ok := strings.Cut(st, "] "); ok {
				st = code + "]"
			} else {
				st, _, _ = strings.Cut(st, " ")
			}
			attacks.add("imap FETCH " + name + ": " + st)
			if strings.HasPrefix(st, "NO") {
				sleepCtx(ctx, 50*time.Millisecond)
			}
		}
	})

	// --- HTTP flood: 40 clients that never finish their request header, back at once.
	spawn("http flood", 40, func(int) {
		for ctx.Err() == nil {
			c, err := dialFrom(addr["http"], "127.0.0.50", loadEnd.Add(time.Minute))
			if err != nil {
				attacks.add("http flood: " + err.Error())
				sleepCtx(ctx, 250*time.Millisecond)
				continue
			}
			if !hostile.add(c) {
				return
			}
			start := time.Now()
			_, _ = c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n"))
			rest, _ := io.ReadAll(c)
			if ctx.Err() == nil {
				first, _, _ := strings.Cut(string(rest), "\r\n")
				attacks.add("http flood: cut " + map[bool]string{true: "silently", false: "with " + first}[first == ""])
				httpHeld.add(time.Since(start))
			}
			hostile.done(c)
		}
	})

	// --- Stop: the load ends at loadEnd; the hostile connections are closed then and the
	// legitimate clients finish what they were doing.
	<-ctx.Done()
	hostile.closeAll()
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(soakRoundWait + 5*time.Second):
		failMu.Lock()
		defer failMu.Unlock()
		t.Fatalf("clients still running %v after the load ended: %s\nfailures: %s", soakRoundWait+5*time.Second, running, strings.Join(failures, "\n"))
	}
	loadTook := time.Since(loadEnd.Add(-soakFor))
	hwm := procStatus(t, pid, "VmHWM")

	// The server still serves: a submission, an IMAP login, a scrape.
	c, _, err := soakSMTP(addr["submission"], "127.0.0.202", time.Now().Add(soakLegitWait), tlsConf, pm, pass)
	require.NoError(t, err, "submission after the load")
	_, err = e2eSend(c, pm, pm, e2eMessage(pm, "soak-after", "after the load"))
	ledger.note("soak-after@e2e.example", "submission", err)
	require.NoError(t, err, "submission after the load")
	c.Close()
	resp, err := (&http.Client{Timeout: soakRoundWait}).Get("http://" + addr["http"] + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	// The queue drains; then every message answered 250 is in the mailbox exactly once,
	// by Message-ID, over IMAP and in the maildir.
	drainStart := time.Now()
	requireEventually(t, func() bool { return soakQueued(t, dir) == 0 })
	drained := time.Since(drainStart)
	ic := loginIMAP(t, addr["imap"], pass)
	defer ic.close()
	ic.keep = 4 << 10
	lines, st, err := ic.cmd("SELECT INBOX")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(st, "OK"), st)
	exists := -1
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[2] == "EXISTS" {
			exists, _ = strconv.Atoi(f[1])
		}
	}
	lines, st, err = ic.cmd("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(st, "OK"), st)
	overIMAP := map[string]int{}
	fetched := 0
	for _, l := range lines {
		if !strings.Contains(l, " FETCH ") {
			continue
		}
		fetched++
		if m := soakMsgIDRe.FindStringSubmatch(l); m != nil {
			overIMAP[m[1]]++
		} else {
			overIMAP[""]++ // the planted messages have none
		}
	}
	inMaildir, files, mailboxBytes := soakMaildirIDs(t, dir)

	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	rssMu.Lock()
	samples := slices.Clone(rss)
	rssMu.Unlock()
	slices.Sort(samples)
	var rssMedian, rssMax int64
	if len(samples) > 0 {
		rssMedian, rssMax = samples[len(samples)/2], samples[len(samples)-1]
	}
	t.Logf("soak of %v (%v in all so far; the queue drained %v after the load)", loadTook.Round(time.Millisecond),
		time.Since(began).Round(time.Second), drained.Round(time.Millisecond))
	t.Logf("RSS: baseline %d MiB, median %d MiB, max sampled %d MiB (%d samples), peak (VmHWM) %d MiB; memory_limit %d MiB",
		baseline>>20, rssMedian>>20, rssMax>>20, len(samples), hwm>>20, soakMemoryLimit>>20)
	t.Logf("legitimate clients:%s", legit)
	t.Logf("  submission 250 latency (connect, STARTTLS, AUTH, message): %s", &subLat)
	t.Logf("  mx 250 latency (one transaction on a cached session): %s", &mxLat)
	t.Logf("  lmtp delivery latency: %s", &lmtpLat)
	t.Logf("  imap round latency (connect, STARTTLS, LOGIN, SELECT, SEARCH, FETCH): %s; last round found %d legitimate messages of %d accepted before it",
		&imapLat, lastFound, lastAccepted)
	t.Logf("    of which LOGIN: %s; SEARCH: %s", &imapLoginLat, &imapSearchLat)
	t.Logf("  /metrics scrape latency: %s", &scrapeLat)
	t.Logf("attacks:%s", attacks)
	t.Logf("  smtp slowloris held until cut: %s", &slowHeld)
	t.Logf("  smtp drip held until cut: %s", &dripHeld)
	t.Logf("  imap flood connections held until closed: %s", &imapFloodHeld)
	t.Logf("  http slow clients held until cut: %s", &httpHeld)
	t.Logf("  smtp large messages, MAIL to 250: %s", &bigLat)
	for _, name := range slices.Sorted(maps.Keys(bombTimes)) {
		t.Logf("  %s: %s", name, bombTimes[name])
	}
	t.Logf("messages: accepted %d (submission %d, mx %d, lmtp %d, hostile large %d), unsure %d, refused %d; mailbox %d messages over IMAP (EXISTS %d), %d files in the maildir (%d MiB), %d planted",
		len(ledger.accepted), count("submission", ledger.accepted), count("mx", ledger.accepted), count("lmtp", ledger.accepted),
		count("big", ledger.accepted), len(ledger.unsure), len(ledger.refused), fetched, exists, files, mailboxBytes>>20, soakPlanted)
	if errs := strings.Count(srv.logText(), "level=ERROR"); errs > 0 {
		t.Logf("the server logged %d ERROR lines, the first: %s", errs, firstLines(srv.logText(), "level=ERROR", 5))
	}

	// Legitimate clients were served all along.
	require.Empty(t, failures, "legitimate clients refused or timed out")
	require.Greater(t, legit.get("submission 250"), 10)
	require.Greater(t, legit.get("mx 250"), 10)
	require.Greater(t, legit.get("lmtp delivered"), 10)
	require.Greater(t, legit.get("imap round ok"), 5)
	require.Greater(t, legit.get("scrape 200"), 5)
	// The attacks did happen: the MX pool was full, IMAP logins were crowded out, the
	// bombs and the slow HTTP clients were refused or cut.
	require.Positive(t, attacks.get("smtp slowloris: refused 421 4.7.0 (listener limit)"), "the MX pool was never full")
	require.Positive(t, attacks.sum("imap flood: * BYE"), "the IMAP flood was never closed by the server")
	require.Positive(t, attacks.get("imap FETCH 200 sections: NO [LIMIT]"))
	require.Positive(t, attacks.get("imap FETCH 3000 HEADER.FIELDS names: NO [LIMIT]"))
	require.Positive(t, attacks.sum("http flood: cut"))
	// Memory.
	require.Less(t, hwm, int64(soakMemoryLimit), "peak RSS over memory_limit")
	// Nothing accepted is lost, nothing is delivered twice, nothing refused is delivered.
	for id, who := range ledger.accepted {
		require.Equal(t, 1, overIMAP[id], "%s message %s answered 250: times over IMAP", who, id)
		require.Equal(t, 1, inMaildir[id], "%s message %s answered 250: times in the maildir", who, id)
	}
	for id, who := range ledger.unsure {
		require.LessOrEqual(t, overIMAP[id], 1, "%s message %s (no reply): times over IMAP", who, id)
	}
	for id, who := range ledger.refused {
		require.Zero(t, overIMAP[id], "%s message %s was refused but delivered", who, id)
	}
	unsureKept := 0
	for id := range overIMAP {
		if id == "" {
			continue
		}
		_, acc := ledger.accepted[id]
		_, uns := ledger.unsure[id]
		require.True(t, acc || uns, "message %s in the mailbox was never sent", id)
		if uns {
			unsureKept++
		}
	}
	require.Equal(t, soakPlanted, overIMAP[""], "planted messages")
	require.Equal(t, soakPlanted+len(ledger.accepted)+unsureKept, fetched)
	require.Equal(t, fetched, exists)
	require.Equal(t, fetched, files)
	t.Logf("test took %v", time.Since(began).Round(time.Second))
}

// firstLines returns the first n lines of log that contain s.
func firstLines(log, s string, n int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// soakIMAPRound is one round of the legitimate IMAP reader. It returns how many
// legitimate messages SEARCH found, and on failure the step that failed.
func soakIMAPRound(addr, src, pass string, deadline time.Time, loginLat, searchLat *soakTimes) (int, string, error) {
	ic, greet, err := dialIMAPFrom(addr, src)
	if err != nil {
		return 0, "connect", err
	}
	defer ic.close()
	_ = ic.conn.SetDeadline(deadline)
	if !strings.HasPrefix(greet, "* OK") {
		return 0, "greeting", fmt.Errorf("%q", greet)
	}
	if err := ic.startTLS(); err != nil {
		return 0, "STARTTLS", err
	}
	step := func(name, format string, args ...any) ([]string, error) {
		lines, st, err := ic.cmd(format, args...)
		if err == nil && !strings.HasPrefix(st, "OK") {
			err = fmt.Errorf("%s", st)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w (%q)", name, err, lines)
		}
		return lines, nil
	}
	start := time.Now()
	if _, err := step("LOGIN", "LOGIN postmaster@example.test %s", pass); err != nil {
		return 0, "LOGIN", err
	}
	loginLat.add(time.Since(start))
	if _, err := step("SELECT", "SELECT INBOX"); err != nil {
		return 0, "SELECT", err
	}
	start = time.Now()
	lines, err := step("SEARCH", "SEARCH SUBJECT soak-")
	if err != nil {
		return 0, "SEARCH", err
	}
	searchLat.add(time.Since(start))
	var seqs []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "* SEARCH"); ok {
			seqs = strings.Fields(rest)
		}
	}
	if len(seqs) > 0 {
		last := seqs[max(0, len(seqs)-3):]
		ic.keep = 4 << 10
		lines, err := step("FETCH", "FETCH %s (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", strings.Join(last, ","))
		if err != nil {
			return 0, "FETCH", err
		}
		n := 0
		for _, l := range lines {
			if strings.Contains(l, " FETCH ") {
				if !strings.Contains(l, "Subject: soak-") {
					return 0, "FETCH", fmt.Errorf("not a message SEARCH found: %q", l)
				}
				n++
			}
		}
		if n != len(last) {
			return 0, "FETCH", fmt.Errorf("%d messages for %d numbers: %q", n, len(last), lines)
		}
	}
	_, _, _ = ic.cmd("LOGOUT")
	return len(seqs), "", nil
}

// soakQueued is the number of messages in the server's queue.
func soakQueued(t *testing.T, dir string) int {
	t.Helper()
	sp, err := spool.Open(filepath.Join(dir, "data", "queue"), spool.Config{Shared: true})
	require.NoError(t, err)
	defer sp.Close()
	ids, err := sp.List()
	require.NoError(t, err)
	return len(ids)
}

// soakMaildirIDs counts the postmaster's messages by Message-ID ("" for none), in new/
// and cur/, and returns the number of files and their bytes.
func soakMaildirIDs(t *testing.T, dir string) (map[string]int, int, int64) {
	t.Helper()
	ids := map[string]int{}
	var files []string
	for _, sub := range []string{"new", "cur"} {
		f, err := filepath.Glob(filepath.Join(filepath.Dir(postmasterMaildir(dir)), sub, "*"))
		require.NoError(t, err)
		files = append(files, f...)
	}
	var size int64
	for _, name := range files {
		f, err := os.Open(name)
		require.NoError(t, err)
		if fi, err := f.Stat(); err == nil {
			size += fi.Size()
		}
		head, _ := io.ReadAll(io.LimitReader(f, 64<<10))
		f.Close()
		if i := bytes.Index(head, []byte("\n\r\n")); i >= 0 {
			head = head[:i]
		} else if i := bytes.Index(head, []byte("\n\n")); i >= 0 {
			head = head[:i]
		}
		if m := soakMsgIDRe.FindSubmatch(head); m != nil {
			ids[string(m[1])]++
		} else {
			ids[""]++
		}
	}
	return ids, len(files), size
}
