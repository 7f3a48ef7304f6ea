// Command logincost measures what a user directory of a given size costs, as
// bench/capacity.sh runs it against one back-end behind the proxy:
//
//	logincost -dsn postgres://... -users 30000 -lookups 2000
//	logincost -addr 127.0.0.1:21899 -users 30000 -logins 300 -parallel 4 -pids 123,456
//
// With -dsn it looks up -lookups users drawn at random from user0..user<users-1> in the
// PostgreSQL directory (package directory, no cache: the proxy's and back-end's miss) and
// prints the latency's p50 and p99. With -addr it runs -logins sessions (connect, implicit
// TLS, LOGIN, LOGOUT), each as a different user drawn at random, -parallel at once, and
// prints the sessions per second, the latency's p50 and p99, and the CPU time of -pids
// (utime+stime from /proc) per login: a first login of each user, so nothing is served
// from the verified-login or directory caches, and the password hash is checked each
// time (argon2id at the hash's own cost).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/directory"
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL directory: measure lookups")
	addr := flag.String("addr", "", "IMAP server (implicit TLS): measure logins")
	users := flag.Int("users", 10000, "users user0..user<N-1>@DOMAIN exist")
	domain := flag.String("domain", "example.test", "the users' domain")
	pass := flag.String("pass", "", "password of every user")
	lookups := flag.Int("lookups", 2000, "directory lookups")
	logins := flag.Int("logins", 200, "sessions, each a different user")
	parallel := flag.Int("parallel", 4, "sessions at once")
	pids := flag.String("pids", "", "comma-separated name=pid of the server processes whose CPU is measured")
	seed := flag.Uint64("seed", 1, "seed of the users drawn")
	flag.Parse()
	rng := rand.New(rand.NewPCG(*seed, *seed))
	user := func(i int) string { return fmt.Sprintf("user%d@%s", i, *domain) }
	if *dsn != "" {
		ctx := context.Background()
		d, err := directory.OpenPostgres(ctx, *dsn)
		if err != nil {
			log.Fatal(err)
		}
		defer d.Close()
		lat := make([]time.Duration, 0, *lookups)
		for range *lookups {
			u := user(rng.IntN(*users))
			t0 := time.Now()
			if _, err := d.Lookup(ctx, u); err != nil {
				log.Fatalf("lookup %s: %v", u, err)
			}
			lat = append(lat, time.Since(t0))
		}
		fmt.Printf("lookups=%d lookup_p50_us=%.0f lookup_p99_us=%.0f\n", len(lat), us(pct(lat, 50)), us(pct(lat, 99)))
	}
	if *addr == "" {
		return
	}
	if *logins > *users {
		*logins = *users
	}
	// Distinct users: a random sample without repeats.
	perm := rng.Perm(*users)[:*logins]
	procs := parsePids(*pids)
	cpu0 := cpuOf(procs)
	var mu sync.Mutex
	var lat []time.Duration
	var failed int
	var firstErr error
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t0 := time.Now()
				err := session(*addr, user(i), *pass)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	for _, i := range perm {
		work <- i
	}
	close(work)
	wg.Wait()
	wall := time.Since(start)
	cpu1 := cpuOf(procs)
	if failed > 0 {
		log.Printf("%d sessions failed; first: %v", failed, firstErr)
	}
	line := fmt.Sprintf("logins=%d failed=%d logins_per_sec=%.1f login_p50_ms=%.1f login_p99_ms=%.1f",
		len(lat), failed, float64(len(lat))/wall.Seconds(), ms(pct(lat, 50)), ms(pct(lat, 99)))
	for _, p := range procs {
		if len(lat) > 0 {
			line += fmt.Sprintf(" %s_cpu_ms_per_login=%.2f", p.name, float64(cpu1[p.name]-cpu0[p.name])/float64(len(lat)))
		}
	}
	fmt.Println(line)
	if failed > 0 {
		os.Exit(1)
	}
}

// session connects with implicit TLS, logs in as user and logs out.
func session(addr, user, pass string) error {
	raw, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(time.Minute))
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	r := bufio.NewReader(c)
	if err := expect(r, "* OK"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	fmt.Fprintf(c, "a LOGIN %q %q\r\n", user, pass)
	if err := expect(r, "a OK"); err != nil {
		return fmt.Errorf("%s: LOGIN: %w", user, err)
	}
	fmt.Fprintf(c, "b LOGOUT\r\n")
	return expect(r, "b OK")
}

// expect reads lines until one that starts with the tag of want (or "*" for the
// greeting), which must start with want.
func expect(r *bufio.Reader, want string) error {
	tag, _, _ := strings.Cut(want, " ")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, want) {
			return nil
		}
		if tag != "*" && strings.HasPrefix(l, tag+" ") || tag == "*" {
			return fmt.Errorf("%s", strings.TrimSpace(l))
		}
	}
}

type proc struct {
	name string
	pid  int
}

func parsePids(s string) []proc {
	var ps []proc
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		name, p, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(p)
		if !ok || err != nil {
			log.Fatalf("-pids %q: want name=pid,...", s)
		}
		ps = append(ps, proc{name, n})
	}
	return ps
}

// cpuOf returns each process's utime+stime in milliseconds.
func cpuOf(ps []proc) map[string]int64 {
	m := map[string]int64{}
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
		if err != nil {
			log.Fatal(err)
		}
		// The fields after the command name (which may hold spaces) in parentheses.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		m[p.name] = (u + st) * 10 // USER_HZ is 100 on Linux
	}
	return m
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
