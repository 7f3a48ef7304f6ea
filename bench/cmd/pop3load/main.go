// Command pop3load measures logins per second of POP3 and IMAP side by side, used by
// bench/pop3.sh against one portcullis process serving both over one user database.
//
//	pop3load -imap 127.0.0.1:21431 -pop3 127.0.0.1:21110 -users 20 -clients 10 -duration 10s -rounds 3
//
// A login is a whole session as a poller makes it: connect, read the greeting, log in
// (IMAP LOGIN; POP3 USER and PASS or AUTH PLAIN, which also open and list the maildrop)
// and log out (LOGOUT; QUIT). Client i logs in as user<i mod users>@DOMAIN, so with users >= clients
// no two POP3 sessions want the same maildrop at once (RFC 1939 §8 locks it). Each round
// runs each kind of session for -duration (IMAP LOGIN/LOGOUT, IMAP with a SELECT INBOX
// between, POP3 USER/PASS, POP3 AUTH PLAIN), so that other load on the machine hits all alike; every round prints
// the rates and POP3's ratios to both IMAP ones, and the last line the totals.
// With -seed N it first appends N messages to every INBOX over IMAP (not measured).
package main

import (
	"bufio"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	imapAddr := flag.String("imap", "127.0.0.1:21431", "IMAP address (plaintext, trusted listener)")
	pop3Addr := flag.String("pop3", "127.0.0.1:21110", "POP3 address (plaintext, trusted listener)")
	users := flag.Int("users", 0, "distinct users user0..user<N-1> (default: one per client)")
	domain := flag.String("domain", "example.test", "domain of the users")
	pass := flag.String("pass", "secret", "password of every user")
	clients := flag.Int("clients", 10, "concurrent clients")
	d := flag.Duration("duration", 10*time.Second, "time per protocol per round")
	rounds := flag.Int("rounds", 3, "rounds")
	seed := flag.Int("seed", 0, "messages to append to every INBOX first")
	only := flag.String("only", "", "imap or pop3: run that protocol's sessions only (to profile the server)")
	flag.Parse()
	if *users == 0 {
		*users = *clients
	}
	if *users < *clients {
		log.Fatal("pop3load: -users must be at least -clients (POP3 locks a maildrop per session)")
	}
	user := func(i int) string { return fmt.Sprintf("user%d@%s", i%*users, *domain) }
	for i := 0; i < *users; i++ {
		if err := seedInbox(*imapAddr, user(i), *pass, *seed); err != nil {
			log.Fatal(err)
		}
	}
	// The kinds of session of a round: IMAP LOGIN and LOGOUT; IMAP LOGIN, SELECT INBOX
	// and LOGOUT (the work of a POP3 login, which opens and lists the maildrop); POP3
	// USER/PASS/QUIT; POP3 AUTH PLAIN/QUIT.
	kinds := []struct {
		name  string
		login func(int) error
	}{
		{"imap", func(i int) error { return imapLogin(*imapAddr, user(i), *pass, false) }},
		{"imap_select", func(i int) error { return imapLogin(*imapAddr, user(i), *pass, true) }},
		{"pop3", func(i int) error { return pop3Login(*pop3Addr, user(i), *pass, false) }},
		{"pop3_sasl", func(i int) error { return pop3Login(*pop3Addr, user(i), *pass, true) }},
	}
	total := make([]result, len(kinds))
	for r := 1; r <= *rounds; r++ {
		res := make([]result, len(kinds))
		for k, kind := range kinds {
			if *only != "" && !strings.HasPrefix(kind.name, *only) {
				continue
			}
			res[k] = run(*clients, *d, kind.login)
			total[k].n += res[k].n
			total[k].took += res[k].took
			total[k].errs += res[k].errs
		}
		report(fmt.Sprintf("round=%d", r), res)
	}
	report("total", total)
}

type result struct {
	n, errs int64
	took    time.Duration
}

func (r result) rate() float64 {
	if r.took == 0 {
		return 0
	}
	return float64(r.n) / r.took.Seconds()
}

// report prints the rates of the kinds and POP3's ratios to both IMAP ones.
func report(what string, r []result) {
	fmt.Printf("%s imap_logins_per_sec=%.0f imap_select_logins_per_sec=%.0f pop3_logins_per_sec=%.0f pop3_sasl_logins_per_sec=%.0f pop3_to_imap=%.2f pop3_to_imap_select=%.2f errors=%d/%d/%d/%d\n",
		what, r[0].rate(), r[1].rate(), r[2].rate(), r[3].rate(), r[2].rate()/r[0].rate(), r[2].rate()/r[1].rate(),
		r[0].errs, r[1].errs, r[2].errs, r[3].errs)
}

// run has clients run login in a loop for d and returns the logins done, the time taken
// and the failures (the first one is logged).
func run(clients int, d time.Duration, login func(int) error) result {
	var done, failed atomic.Int64
	var once sync.Once
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := login(i); err != nil {
					failed.Add(1)
					once.Do(func() { log.Printf("pop3load: %v", err) })
					time.Sleep(50 * time.Millisecond)
					continue
				}
				done.Add(1)
			}
		}(i)
	}
	wg.Wait()
	return result{n: done.Load(), took: time.Since(start), errs: failed.Load()}
}

type conn struct {
	c net.Conn
	r *bufio.Reader
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &conn{c: c, r: bufio.NewReader(c)}, nil
}

// line reads one line and fails unless it starts with one of the prefixes.
func (c *conn) line(prefix ...string) (string, error) {
	l, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	for _, p := range prefix {
		if strings.HasPrefix(l, p) {
			return l, nil
		}
	}
	return "", fmt.Errorf("got %q, want %q", strings.TrimSpace(l), prefix)
}

// tagged sends an IMAP command and reads to its tagged OK.
func (c *conn) tagged(tag, cmd string) error {
	if _, err := fmt.Fprintf(c.c, "%s %s\r\n", tag, cmd); err != nil {
		return err
	}
	for {
		l, err := c.line("* ", tag+" OK", "+ ")
		if err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
		}
		if strings.HasPrefix(l, tag+" ") {
			return nil
		}
	}
}

func imapLogin(addr, user, pass string, selectInbox bool) error {
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.c.Close()
	if _, err := c.line("* OK"); err != nil {
		return err
	}
	if err := c.tagged("a", fmt.Sprintf("LOGIN %q %q", user, pass)); err != nil {
		return err
	}
	if selectInbox {
		if err := c.tagged("s", "SELECT INBOX"); err != nil {
			return err
		}
	}
	return c.tagged("b", "LOGOUT")
}

// pop3 sends a POP3 command and reads its +OK.
func (c *conn) pop3(cmd string) error {
	if _, err := fmt.Fprintf(c.c, "%s\r\n", cmd); err != nil {
		return err
	}
	if _, err := c.line("+OK"); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	return nil
}

// pop3Login logs in with USER and PASS, or with AUTH PLAIN and its initial response
// (RFC 5034) when sasl is set.
func pop3Login(addr, user, pass string, sasl bool) error {
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.c.Close()
	if _, err := c.line("+OK"); err != nil {
		return err
	}
	cmds := []string{"USER " + user, "PASS " + pass, "QUIT"}
	if sasl {
		cmds = []string{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)), "QUIT"}
	}
	for _, cmd := range cmds {
		if err := c.pop3(cmd); err != nil {
			return err
		}
	}
	return nil
}

// seedInbox appends messages to user's INBOX until it holds n.
func seedInbox(addr, user, pass string, n int) error {
	if n <= 0 {
		return nil
	}
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.c.Close()
	c.c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := c.line("* OK"); err != nil {
		return err
	}
	if err := c.tagged("a", fmt.Sprintf("LOGIN %q %q", user, pass)); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("From: load@example.org\r\nTo: %s\r\nSubject: seed %d\r\nMessage-ID: <%d.%s@load>\r\n\r\n%s\r\n",
			user, i, i, user, strings.Repeat("Lorem ipsum dolor sit amet. ", 40))
		if _, err := fmt.Fprintf(c.c, "s%d APPEND INBOX {%d}\r\n", i, len(msg)); err != nil {
			return err
		}
		if _, err := c.line("+ "); err != nil {
			return fmt.Errorf("seed %s: %w", user, err)
		}
		if _, err := c.c.Write([]byte(msg + "\r\n")); err != nil {
			return err
		}
		for {
			l, err := c.line("* ", fmt.Sprintf("s%d OK", i))
			if err != nil {
				return fmt.Errorf("seed %s: %w", user, err)
			}
			if strings.HasPrefix(l, "s") {
				break
			}
		}
	}
	return c.tagged("z", "LOGOUT")
}
