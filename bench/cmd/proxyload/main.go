// Command proxyload measures the CPU that IMAP sessions and commands cost the server
// processes: it runs bare sessions (connect, TLS, LOGIN, LOGOUT), a client's usual
// sessions (connect, TLS, LOGIN, SELECT, a FETCH of the flags and envelopes, a SEARCH,
// two FETCHes of a body, LOGOUT), and then NOOPs, FETCHes of a 20 KB body and SEARCHes on
// one logged-in connection against -addr, and reads the CPU time of -pids and their
// descendants (utime+stime, and cutime+cstime of the children they reaped, from /proc)
// before and after each phase. Run against a back-end directly and through the
// proxy, the difference is the proxy's cost (bench/proxy.sh).
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "", "IMAP server (implicit TLS)")
	from := flag.String("from", "127.0.0.2", "local address to connect from")
	user := flag.String("user", "", "user")
	pass := flag.String("pass", "", "password")
	pids := flag.String("pids", "", "comma-separated server pids whose CPU is measured")
	sessions := flag.Int("sessions", 1000, "sessions")
	noops := flag.Int("noops", 20000, "NOOPs")
	fetches := flag.Int("fetches", 2000, "FETCH 1 BODY.PEEK[] of the first message")
	mixes := flag.Int("mixes", 300, "usual sessions")
	searches := flag.Int("searches", 2000, "SEARCH SUBJECT of 20 messages")
	setup := flag.Bool("setup", false, "append the 20 messages (once per mailbox)")
	cpuOnly := flag.Bool("cpu", false, "print the CPU time of -pids (their trees, in µs) and exit")
	flag.Parse()
	var ps []int
	for _, p := range strings.Split(*pids, ",") {
		n, err := strconv.Atoi(p)
		if err != nil {
			log.Fatalf("pids: %v", err)
		}
		ps = append(ps, n)
	}
	if *cpuOnly {
		fmt.Printf("%.0f\n", us(cpu(ps).total))
		return
	}
	dial := func() (*tls.Conn, *bufio.Reader) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*from)}}
		raw, err := d.Dial("tcp", *addr)
		if err != nil {
			log.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		r := bufio.NewReaderSize(c, 64<<10)
		expect(r, "* OK")
		return c, r
	}
	login := fmt.Sprintf("a LOGIN %q %q\r\n", *user, *pass)

	cpu0 := cpu(ps)
	for range *sessions {
		c, r := dial()
		c.Write([]byte(login))
		expect(r, "a OK")
		c.Write([]byte("b LOGOUT\r\n"))
		expect(r, "b OK")
		c.Close()
	}
	perSession := per(cpu0, cpu(ps), *sessions)

	c, r := dial()
	c.Write([]byte(login))
	expect(r, "a OK")
	if *setup {
		// 20 messages of 20 KB for the FETCHes and SEARCHes.
		for i := range 20 {
			msg := fmt.Sprintf("From: a@example.test\r\nSubject: bench %d\r\n\r\n", i) + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 200)
			fmt.Fprintf(c, "p APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg)
			expect(r, "p OK")
		}
	}
	c.Write([]byte("s SELECT INBOX\r\n"))
	expect(r, "s OK")
	phase := func(n int, cmd, tag string) sample {
		cpu0 := cpu(ps)
		for range n {
			c.Write([]byte(cmd))
			expect(r, tag)
		}
		return per(cpu0, cpu(ps), n)
	}
	perNoop := phase(*noops, "n NOOP\r\n", "n OK")
	perFetch := phase(*fetches, "f FETCH 1 BODY.PEEK[]\r\n", "f OK")
	perSearch := phase(*searches, "q SEARCH SUBJECT \"bench 1\"\r\n", "q OK")
	c.Write([]byte("z LOGOUT\r\n"))
	expect(r, "z OK")
	c.Close()

	cpu0 = cpu(ps)
	for range *mixes {
		c, r := dial()
		for _, cmd := range []string{login, "b SELECT INBOX\r\n", "c FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)\r\n",
			"d SEARCH UNSEEN\r\n", "e FETCH 3 BODY.PEEK[]\r\n", "f FETCH 7 BODY.PEEK[]\r\n", "g LOGOUT\r\n"} {
			c.Write([]byte(cmd))
			expect(r, cmd[:2]+"OK")
		}
		c.Close()
	}
	perMix := per(cpu0, cpu(ps), *mixes)
	// cpu_us: all the -pids; backend_us: the last one's alone (the back-end's, when
	// -pids is proxy,back-end).
	fmt.Printf("cpu_us_per_session=%.1f cpu_us_per_mix_session=%.1f cpu_us_per_noop=%.2f cpu_us_per_fetch=%.2f cpu_us_per_search=%.2f ",
		us(perSession.total), us(perMix.total), us(perNoop.total), us(perFetch.total), us(perSearch.total))
	fmt.Printf("backend_us_per_session=%.1f backend_us_per_mix_session=%.1f backend_us_per_noop=%.2f backend_us_per_fetch=%.2f backend_us_per_search=%.2f\n",
		us(perSession.last), us(perMix.last), us(perNoop.last), us(perFetch.last), us(perSearch.last))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// sample is the CPU time of all the processes measured, and of the last one alone.
type sample struct{ total, last time.Duration }

// per is the CPU per operation between two samples.
func per(a, b sample, n int) sample {
	d := time.Duration(max(n, 1))
	return sample{(b.total - a.total) / d, (b.last - a.last) / d}
}

// cpu is the user+system CPU time of the processes and of their descendants: the live
// ones, and through cutime+cstime the ones they reaped (clock ticks of 10 ms: the phases
// run long enough for that). A Go server is one process; a Dovecot instance is its master
// and the processes the master forks (auth, imap-login, imap ...), which come and go:
// with service_count = 1 a login process lives for one connection, and its CPU moves to
// the master's cutime when it is reaped.
func cpu(pids []int) sample {
	ticks, children := procs()
	var total, last time.Duration
	for _, p := range pids {
		if _, ok := ticks[p]; !ok {
			log.Fatalf("process %d is gone", p)
		}
		last = time.Duration(tree(p, ticks, children, 0)) * 10 * time.Millisecond
		total += last
	}
	return sample{total, last}
}

// tree sums the ticks of p and its descendants (depth bounded: /proc is read while
// processes come and go).
func tree(p int, ticks map[int]int, children map[int][]int, depth int) int {
	t := ticks[p]
	if depth < 16 {
		for _, c := range children[p] {
			t += tree(c, ticks, children, depth+1)
		}
	}
	return t
}

// procs reads /proc/*/stat: each process's utime+stime+cutime+cstime, and the children
// of each parent. A process that exits while /proc is read is left out.
func procs() (ticks map[int]int, children map[int][]int) {
	ticks, children = map[int]int{}, map[int][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 > len(s) {
			continue
		}
		// Fields after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13)
		// cstime(14) (proc(5)).
		f := strings.Fields(s[i+2:])
		if len(f) < 15 {
			continue
		}
		n := 0
		for _, k := range f[11:15] {
			v, _ := strconv.Atoi(k)
			n += v
		}
		ppid, _ := strconv.Atoi(f[1])
		ticks[pid] = n
		children[ppid] = append(children[ppid], pid)
	}
	return ticks, children
}

func expect(r *bufio.Reader, prefix string) {
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			log.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(l, prefix) {
			return
		}
		if prefix[0] != '*' && strings.HasPrefix(l, prefix[:2]) {
			log.Fatalf("got %q, want %q", l, prefix)
		}
	}
}
