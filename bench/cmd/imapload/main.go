// Command imapload is a load generator for IMAP servers, written on go-imap/v2's client,
// used by bench/imap.sh to compare portcullis with Dovecot configured the same way.
//
//	imapload -addr 127.0.0.1:1143 -clients 50 -duration 20s     # the operation mix
//	imapload -addr 127.0.0.1:1143 -idle 5000 -server-pid PID     # hold IDLE sessions, report memory
//	imapload -serve DIR -listen 127.0.0.1:1143                   # run portcullis imapd on DIR
//
// Each client logs in as user<N> (password -pass), selects INBOX and repeats FETCH (flags,
// envelope, size of 10 messages), STORE \Seen, APPEND, SEARCH in body text, STORE \Deleted
// and EXPUNGE of the appended message; it logs out and in again every 25 rounds. Every
// command counts as one operation.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/imapd"
	"github.com/portcullis-mail/portcullis/store"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1143", "IMAP server address (plaintext, trusted)")
	clients := flag.Int("clients", 50, "concurrent clients")
	users := flag.Int("users", 0, "distinct users (default: one per client)")
	duration := flag.Duration("duration", 20*time.Second, "measurement time")
	pass := flag.String("pass", "secret", "password of every user")
	seed := flag.Int("seed", 30, "messages per INBOX before measuring")
	idle := flag.Int("idle", 0, "hold this many IDLE sessions instead of running the mix")
	pid := flag.Int("server-pid", 0, "server process whose RSS to report with -idle")
	serve := flag.String("serve", "", "run the portcullis IMAP server on this store directory")
	listen := flag.String("listen", "127.0.0.1:1143", "address for -serve")
	cpuprofile := flag.String("cpuprofile", "", "with -serve: write a CPU profile here until SIGTERM")
	pprofAddr := flag.String("pprof", "", "with -serve: serve net/http/pprof on this address")
	flag.Parse()
	raiseFileLimit()

	switch {
	case *serve != "":
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				log.Fatal(err)
			}
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		if *pprofAddr != "" {
			go http.ListenAndServe(*pprofAddr, nil)
		}
		if err := runServer(*serve, *listen, *pass); err != nil {
			log.Fatal(err)
		}
	case *idle > 0:
		if err := holdIdle(*addr, *idle, *users, *pass, *pid); err != nil {
			log.Fatal(err)
		}
	default:
		if *users == 0 {
			*users = *clients
		}
		if err := runMix(*addr, *clients, *users, *pass, *seed, *duration); err != nil {
			log.Fatal(err)
		}
	}
}

func raiseFileLimit() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil {
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

type anyUser string

func (p anyUser) Authenticate(_ context.Context, u, pw string, _ netip.Addr) (string, error) {
	if pw != string(p) || !strings.HasPrefix(u, "user") {
		return "", auth.ErrInvalid
	}
	return u + "@bench.example", nil
}

func runServer(dir, listen, pass string) error {
	st, err := store.New(store.Config{Dir: dir, MaxOpenUsers: 10000})
	if err != nil {
		return err
	}
	// No connection limits, as the Dovecot of bench/imap.sh (5000 idle connections and
	// 200 clients from one address, mail_max_userip_connections = 10000).
	cfg := imapd.Config{Trusted: true, MaxConnections: -1, MaxConnectionsPerIP: -1, MaxLoginConnections: -1,
		MaxUserConnections: -1, MaxUserIPConnections: -1}
	srv, err := imapd.New(cfg, st, anyUser(pass), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Close()
		st.Close()
		pprof.StopCPUProfile()
		os.Exit(0)
	}()
	return srv.Serve(ln)
}

// useTLS and domain are -tls and -domain: a proxy takes passwords over TLS only, and
// finds users by address in its directory.
var (
	useTLS = flag.Bool("tls", false, "implicit TLS, certificate not verified (a proxy's imaps_addr)")
	domain = flag.String("domain", "", "users are user<N>@DOMAIN (default: user<N>)")
)

func userName(n int) string {
	if *domain != "" {
		return fmt.Sprintf("user%d@%s", n, *domain)
	}
	return fmt.Sprintf("user%d", n)
}

func dial(addr, user, pass string) (*imapclient.Client, error) {
	var c *imapclient.Client
	var err error
	if *useTLS {
		c, err = imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	} else {
		c, err = imapclient.DialInsecure(addr, nil)
	}
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	return c, nil
}

const body = "From: load@example.org\r\nTo: user@example.org\r\nSubject: load test %d\r\nDate: Mon, 02 Jan 2026 10:00:00 +0000\r\nMessage-ID: <%d@load>\r\n\r\nLorem ipsum dolor sit amet, consectetur adipiscing elit. %s\r\n"

func appendMsg(c *imapclient.Client, n int) (imap.UID, error) {
	word := "ordinary"
	if n%7 == 0 {
		word = "needle"
	}
	msg := fmt.Sprintf(body, n, n, strings.Repeat(word+" text ", 40))
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	d, err := cmd.Wait()
	if err != nil {
		return 0, err
	}
	return d.UID, nil
}

func runMix(addr string, clients, users int, pass string, seed int, d time.Duration) error {
	// Seed each INBOX (not measured).
	for u := 0; u < users; u++ {
		c, err := dial(addr, userName(u), pass)
		if err != nil {
			return err
		}
		sd, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			return err
		}
		for i := int(sd.NumMessages); i < seed; i++ {
			if _, err := appendMsg(c, i); err != nil {
				return err
			}
		}
		c.Logout().Wait()
		c.Close()
	}
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			user := userName(i % users)
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for time.Now().Before(stop) {
				if err := session(addr, user, pass, rng, stop, &ops); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(i)
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("clients=%d users=%d ops=%d errors=%d seconds=%.1f ops_per_sec=%.0f\n", clients, users, ops.Load(), errs.Load(), el.Seconds(), float64(ops.Load())/el.Seconds())
	opStats.mu.Lock()
	for _, k := range []string{"login", "select", "fetch", "store", "append", "search", "expunge"} {
		if n := opStats.n[k]; n > 0 {
			fmt.Fprintf(os.Stderr, "  %-8s n=%-7d avg=%.2fms\n", k, n, float64(opStats.d[k].Microseconds())/1000/float64(n))
		}
	}
	opStats.mu.Unlock()
	if e, ok := firstErr.Load().(error); ok {
		fmt.Fprintf(os.Stderr, "first error: %v\n", e)
	}
	return nil
}

// opStats accumulates time per operation kind.
var opStats struct {
	mu sync.Mutex
	n  map[string]int64
	d  map[string]time.Duration
}

func timed(kind string, start time.Time) {
	el := time.Since(start)
	opStats.mu.Lock()
	if opStats.n == nil {
		opStats.n, opStats.d = map[string]int64{}, map[string]time.Duration{}
	}
	opStats.n[kind]++
	opStats.d[kind] += el
	opStats.mu.Unlock()
}

func session(addr, user, pass string, rng *rand.Rand, stop time.Time, ops *atomic.Int64) error {
	t0 := time.Now()
	c, err := dial(addr, user, pass)
	if err != nil {
		return err
	}
	defer c.Close()
	timed("login", t0)
	ops.Add(1)
	t0 = time.Now()
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		return err
	}
	timed("select", t0)
	ops.Add(1)
	n := sd.NumMessages
	for round := 0; round < 25 && time.Now().Before(stop); round++ {
		if n == 0 {
			n = 1
		}
		lo := uint32(rng.IntN(int(n))) + 1
		hi := min(lo+9, n)
		var set imap.SeqSet
		set.AddRange(lo, hi)
		t0 = time.Now()
		if _, err := c.Fetch(set, &imap.FetchOptions{Flags: true, Envelope: true, RFC822Size: true, UID: true}).Collect(); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		timed("fetch", t0)
		ops.Add(1)
		t0 = time.Now()
		if err := c.Store(imap.SeqSetNum(lo), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}, Silent: true}, nil).Close(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		timed("store", t0)
		ops.Add(1)
		t0 = time.Now()
		uid, err := appendMsg(c, rng.IntN(1000000))
		if err != nil {
			return fmt.Errorf("append: %w", err)
		}
		timed("append", t0)
		ops.Add(1)
		t0 = time.Now()
		if _, err := c.Search(&imap.SearchCriteria{Body: []string{"needle"}}, nil).Wait(); err != nil {
			return fmt.Errorf("search: %w", err)
		}
		timed("search", t0)
		ops.Add(1)
		if uid != 0 {
			t0 = time.Now()
			if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				return fmt.Errorf("store deleted: %w", err)
			}
			timed("store", t0)
			ops.Add(1)
			t0 = time.Now()
			if err := c.UIDExpunge(imap.UIDSetNum(uid)).Close(); err != nil {
				return fmt.Errorf("expunge: %w", err)
			}
			timed("expunge", t0)
			ops.Add(1)
		}
		if err := c.Noop().Wait(); err != nil {
			return err
		}
		if mb := c.Mailbox(); mb != nil {
			n = mb.NumMessages
		}
	}
	c.Logout().Wait()
	return nil
}

func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

func holdIdle(addr string, n, users int, pass string, pid int) error {
	if users == 0 {
		users = 50
	}
	before := int64(0)
	if pid > 0 {
		before, _ = rss(pid)
	}
	var mu sync.Mutex
	var conns []*imapclient.Client
	var idles []*imapclient.IdleCommand
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(addr, userName(i%users), pass)
			if err != nil {
				failed.Add(1)
				return
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				failed.Add(1)
				c.Close()
				return
			}
			idle, err := c.Idle()
			if err != nil {
				failed.Add(1)
				c.Close()
				return
			}
			mu.Lock()
			conns = append(conns, c)
			idles = append(idles, idle)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	fmt.Printf("idle_sessions=%d failed=%d\n", len(conns), failed.Load())
	if pid > 0 {
		after, err := rss(pid)
		if err == nil && len(conns) > 0 {
			fmt.Printf("server_rss_before=%d server_rss_after=%d bytes_per_idle_connection=%d\n", before, after, (after-before)/int64(len(conns)))
		}
	}
	for i, c := range conns {
		idles[i].Close()
		c.Close()
	}
	return nil
}
