// Command imapidle holds many IMAP sessions in IDLE against a running server and reports
// the server's resident memory per connection, as bench/imapidle.sh runs it against the
// portcullis binary:
//
//	imapidle -addr 127.0.0.1:1143 -levels 2000,10000 -users 200 -server-pid PID
//
// Each connection logs in as user<i % users>@DOMAIN, selects INBOX and sends IDLE; it then
// only waits, as a mail client on a phone does. At each level (connections open at once)
// it waits for the server to settle, reads the server's VmRSS from /proc and prints it
// with the RSS per connection since the start and since the previous level (the second
// leaves out what the server holds once, such as the users' open indexes). -pprof saves a
// heap profile and the goroutine count of the server at each level. At the end every
// session ends its IDLE with DONE and must get its OK: the sessions were held, not dropped.
// Behind a proxy, -proxy-pid reports the proxy's RSS per connection as well, and -hold
// keeps the sessions open after the last level while other load runs (bench/capacity.sh
// runs imapload's operation mix on a fraction of active clients meanwhile).
//
// The client side is raw lines over one socket per session, no goroutine per session
// while idle, so that 10,000 sessions fit in one small process.
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1143", "IMAP server address")
	useTLS := flag.Bool("tls", false, "implicit TLS (imaps) instead of plaintext")
	levels := flag.String("levels", "2000", "comma-separated numbers of sessions to hold, ascending")
	users := flag.Int("users", 200, "distinct users")
	domain := flag.String("domain", "bench.example", "users are user<N>@DOMAIN")
	pass := flag.String("pass", "secret", "password of every user")
	pid := flag.Int("server-pid", 0, "server process whose VmRSS to report")
	pprofURL := flag.String("pprof", "", "server's /debug/pprof/ base URL: save heap profiles and count goroutines")
	profDir := flag.String("profdir", ".", "where -pprof writes heap-N.pprof")
	settle := flag.Duration("settle", 5*time.Second, "wait after opening a level before measuring")
	parallel := flag.Int("parallel", 32, "sessions opened at once")
	proxyPid := flag.Int("proxy-pid", 0, "a proxy in front of the server: report its VmRSS per connection too")
	hold := flag.Duration("hold", 0, "after the last level, hold the sessions this long before DONE (other load may run meanwhile)")
	flag.Parse()
	raiseFileLimit()

	var ns []int
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || (len(ns) > 0 && n <= ns[len(ns)-1]) {
			log.Fatalf("-levels %q: want ascending positive numbers", *levels)
		}
		ns = append(ns, n)
	}
	d := dialer{addr: *addr, tls: *useTLS, pass: *pass}
	base, pbase := rssOf(*pid), rssOf(*proxyPid)
	fmt.Printf("server_rss_start=%d\n", base)
	var held []*session
	prevN, prevRSS, prevProxy := 0, base, pbase
	for _, n := range ns {
		more, failed, firstErr := d.open(len(held), n, *users, *domain, *parallel)
		held = append(held, more...)
		if failed > 0 {
			log.Printf("level %d: %d sessions failed; first: %v", n, failed, firstErr)
		}
		time.Sleep(*settle)
		r := rssOf(*pid)
		line := fmt.Sprintf("sessions=%d failed=%d server_rss=%d", len(held), failed, r)
		if *pid > 0 && len(held) > 0 {
			line += fmt.Sprintf(" rss_per_conn=%.1fKiB", float64(r-base)/float64(len(held))/1024)
			if len(held) > prevN && prevN > 0 {
				line += fmt.Sprintf(" rss_per_added_conn=%.1fKiB", float64(r-prevRSS)/float64(len(held)-prevN)/1024)
			}
		}
		if *proxyPid > 0 && len(held) > 0 {
			pr := rssOf(*proxyPid)
			line += fmt.Sprintf(" proxy_rss=%d proxy_rss_per_conn=%.1fKiB", pr, float64(pr-pbase)/float64(len(held))/1024)
			if len(held) > prevN && prevN > 0 {
				line += fmt.Sprintf(" proxy_rss_per_added_conn=%.1fKiB", float64(pr-prevProxy)/float64(len(held)-prevN)/1024)
			}
			prevProxy = pr
		}
		if *pprofURL != "" {
			if g, err := goroutines(*pprofURL); err == nil {
				line += fmt.Sprintf(" server_goroutines=%d", g)
			}
			if ms, err := memStats(*pprofURL); err == nil {
				line += ms
			}
			path := fmt.Sprintf("%s/heap-%d.pprof", *profDir, len(held))
			if err := save(*pprofURL+"heap", path); err != nil {
				log.Printf("heap profile: %v", err)
			}
			path = fmt.Sprintf("%s/goroutines-%d.txt", *profDir, len(held))
			if err := save(*pprofURL+"goroutine?debug=1", path); err != nil {
				log.Printf("goroutine profile: %v", err)
			}
		}
		fmt.Println(line)
		prevN, prevRSS = len(held), r
	}
	if *hold > 0 {
		fmt.Printf("holding=%d for %v\n", len(held), *hold)
		time.Sleep(*hold)
	}
	// Every session must still be there: DONE gets the IDLE's tagged OK.
	var alive atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, *parallel)
	for _, s := range held {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if s.done() == nil {
				alive.Add(1)
			}
			s.conn.Close()
		}()
	}
	wg.Wait()
	fmt.Printf("sessions_answering_done=%d of %d\n", alive.Load(), len(held))
	if alive.Load() != int64(len(held)) || len(held) != ns[len(ns)-1] {
		os.Exit(1)
	}
}

type dialer struct {
	addr string
	tls  bool
	pass string
}

type session struct {
	conn net.Conn
	r    *bufio.Reader
}

// open opens sessions from..to-1 and returns those that reached IDLE.
func (d dialer) open(from, to, users int, domain string, parallel int) ([]*session, int, error) {
	var mu sync.Mutex
	var out []*session
	var failed int
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := from; i < to; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := d.idle(fmt.Sprintf("user%d@%s", i%users, domain))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			out = append(out, s)
		}()
	}
	wg.Wait()
	return out, failed, firstErr
}

// idle logs in, selects INBOX and enters IDLE.
func (d dialer) idle(user string) (*session, error) {
	c, err := net.DialTimeout("tcp", d.addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if d.tls {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		c = tc
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	s := &session{conn: c, r: bufio.NewReaderSize(c, 512)}
	if l, err := s.line(); err != nil || !strings.HasPrefix(l, "* OK") {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %v", l, err)
	}
	for _, cmd := range []string{fmt.Sprintf("a LOGIN %s %s", user, d.pass), "b SELECT INBOX"} {
		if err := s.cmd(cmd); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", user, err)
		}
	}
	if _, err := io.WriteString(c, "c IDLE\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	for {
		l, err := s.line()
		if err != nil {
			c.Close()
			return nil, err
		}
		if strings.HasPrefix(l, "+") {
			break
		}
		if strings.HasPrefix(l, "c ") {
			c.Close()
			return nil, fmt.Errorf("IDLE: %s", l)
		}
	}
	c.SetDeadline(time.Time{})
	return s, nil
}

func (s *session) line() (string, error) {
	l, err := s.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// cmd sends a tagged command and reads up to its tagged reply, which must be OK.
func (s *session) cmd(cmd string) error {
	tag, _, _ := strings.Cut(cmd, " ")
	if _, err := io.WriteString(s.conn, cmd+"\r\n"); err != nil {
		return err
	}
	for {
		l, err := s.line()
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return errors.New(l)
			}
			return nil
		}
	}
}

// done ends the IDLE and waits for its OK (untagged updates may come first).
func (s *session) done() error {
	s.conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(s.conn, "DONE\r\n"); err != nil {
		return err
	}
	for {
		l, err := s.line()
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(l, "c "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return errors.New(l)
			}
			return nil
		}
	}
}

func rssOf(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	log.Fatal("no VmRSS")
	return 0
}

func goroutines(base string) (int, error) {
	resp, err := http.Get(base + "goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	l, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, err
	}
	// "goroutine profile: total N"
	f := strings.Fields(l)
	return strconv.Atoi(f[len(f)-1])
}

// memStats returns the Go heap and stacks in use from the heap profile's MemStats: the
// rest of the RSS is outside the Go heap (SQLite's allocator, the runtime).
func memStats(base string) (string, error) {
	resp, err := http.Get(base + "heap?debug=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var out string
	for _, l := range strings.Split(string(b), "\n") {
		// "# HeapInuse = N", "# Stack = INUSE / SYS"
		for _, k := range []string{"HeapInuse", "Stack"} {
			if v, ok := strings.CutPrefix(l, "# "+k+" = "); ok {
				v, _, _ = strings.Cut(v, " ")
				n, _ := strconv.ParseInt(v, 10, 64)
				out += fmt.Sprintf(" go_%s=%.1fMiB", strings.ToLower(k), float64(n)/(1<<20))
			}
		}
	}
	return out, nil
}

func save(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func raiseFileLimit() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil {
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}
