package imapd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A message appended and then flagged by another session reaches a selected session as
// EXISTS before the FETCH of its flags (issue 16 item 7: "* 33 FETCH" went out during
// APPEND to a client told of 32 messages, imaptest's "seq too high").
func TestPollSendsExistsBeforeFetchOfNewMessage(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	a := dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("SELECT INBOX")
	b := dialRaw(t, e.addr)
	b.ok(`LOGIN alice@example.org "secret pw"`)
	fmt.Fprintf(b.conn, "b1 APPEND INBOX {%d}\r\n", len(msgA))
	if l := b.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND continuation: %q", l)
	}
	fmt.Fprintf(b.conn, "%s\r\n", msgA)
	for l := b.line(); !strings.HasPrefix(l, "b1 "); l = b.line() {
	}
	b.ok("SELECT INBOX")
	b.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)

	lines := a.ok("NOOP")
	exists, fetch := -1, -1
	for i, l := range lines {
		switch {
		case l == "* 2 EXISTS":
			exists = i
		case strings.HasPrefix(l, "* 2 FETCH"):
			fetch = i
		}
	}
	if exists < 0 || fetch < 0 || exists > fetch {
		t.Fatalf("NOOP after another session's APPEND and STORE: %q, want * 2 EXISTS before * 2 FETCH", lines)
	}
}

// FETCH of a message another session expunged, before this session was told, answers
// NO [EXPUNGEISSUED] (RFC 5530 §3, as Dovecot; imaptest accepts its words) and the next
// command brings the EXPUNGE; the messages still there are fetched (issue 16 item 7).
func TestFetchOfMessageExpungedElsewhere(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	e.deliver(t, "alice@example.org", msgA)
	a := dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("SELECT INBOX")
	b := dialRaw(t, e.addr)
	b.ok(`LOGIN alice@example.org "secret pw"`)
	b.ok("SELECT INBOX")
	b.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.ok("EXPUNGE")

	lines, status := a.cmd("FETCH 1:2 (UID RFC822.SIZE)")
	if !strings.HasPrefix(status, "NO [EXPUNGEISSUED]") {
		t.Fatalf("FETCH of an expunged message: %s %q", status, lines)
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* 2 FETCH (UID 2 ") {
		t.Fatalf("FETCH 1:2 with 1 expunged elsewhere: %q", lines)
	}
	if lines := a.ok("NOOP"); len(lines) == 0 || lines[len(lines)-1] != "* 1 EXPUNGE" {
		t.Fatalf("NOOP after: %q", lines)
	}
}

// Sessions of one user append, flag, fetch and expunge in the same mailbox at once, as
// imaptest's stress run does. Each session checks the invariants imaptest checks: no
// sequence number beyond what the session was told exists, no keyword in FETCH that
// FLAGS has not announced, and every body it is sent is the message's whole body.
func TestConcurrentSessionsKeepTheirView(t *testing.T) {
	e := start(t, Config{Trusted: true})
	const sessions, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for n := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- stressSession(e.addr, n, rounds)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

var (
	reExists  = regexp.MustCompile(`^\* (\d+) EXISTS$`)
	reExpunge = regexp.MustCompile(`^\* (\d+) EXPUNGE$`)
	reFetch   = regexp.MustCompile(`^\* (\d+) FETCH \(`)
	reFlags   = regexp.MustCompile(`^\* FLAGS \(([^)]*)\)`)
	reFFlags  = regexp.MustCompile(`FLAGS \(([^)]*)\)`)
	reLiteral = regexp.MustCompile(`\{(\d+)\}$`)
)

// stressSession runs one session's rounds and returns the first broken invariant.
func stressSession(addr string, n, rounds int) (err error) {
	// Not dialRaw: its t.Fatal would not stop this goroutine; errors are returned.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	s := &viewChecker{w: c, r: bufio.NewReader(c), keywords: map[string]bool{}}
	if l, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		return fmt.Errorf("greeting %q: %v", l, err)
	}
	if err := s.run(`LOGIN alice@example.org "secret pw"`); err != nil {
		return err
	}
	if err := s.run("SELECT INBOX"); err != nil {
		return err
	}
	body := fmt.Sprintf("Subject: s%d\r\n\r\n%s\r\n", n, strings.Repeat("body ", 50))
	for i := range rounds {
		kw := fmt.Sprintf("$Kw%d", (n+i)%5)
		cmds := []string{
			fmt.Sprintf("APPEND INBOX (%s) {%d}\r\n%s", kw, len(body), body),
			"NOOP",
			"FETCH 1:* (UID FLAGS BODY.PEEK[])",
			fmt.Sprintf("STORE %d:* +FLAGS (%s)", max(1, s.exists-1), kw),
			fmt.Sprintf("STORE 1 +FLAGS.SILENT (\\Deleted $Kw%d)", i%7),
			"FETCH 1:* (FLAGS ENVELOPE)",
			"EXPUNGE",
		}
		for _, cmd := range cmds {
			if err := s.run(cmd); err != nil {
				return fmt.Errorf("session %d round %d: %w", n, i, err)
			}
		}
	}
	return s.run("LOGOUT")
}

type viewChecker struct {
	w        io.Writer
	r        *bufio.Reader
	tag      int
	exists   int
	keywords map[string]bool
}

// run sends cmd (with a synchronizing literal, if any, sent after the continuation)
// and checks every response up to its tagged status, which may be OK, or NO
// [EXPUNGEISSUED] for a FETCH or STORE.
func (s *viewChecker) run(cmd string) error {
	s.tag++
	tag := fmt.Sprintf("c%d", s.tag)
	first, lit, hasLit := strings.Cut(cmd, "\r\n")
	fmt.Fprintf(s.w, "%s %s\r\n", tag, first)
	for {
		l, err := s.readLine()
		if err != nil {
			return fmt.Errorf("%s: %w", first, err)
		}
		if strings.HasPrefix(l, "+") && hasLit {
			fmt.Fprintf(s.w, "%s\r\n", lit)
			hasLit = false
			continue
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if strings.HasPrefix(rest, "OK") || strings.HasPrefix(rest, "NO [EXPUNGEISSUED]") {
				return nil
			}
			return fmt.Errorf("%s: %s", first, rest)
		}
		if err := s.check(l); err != nil {
			return fmt.Errorf("%s: %w", first, err)
		}
	}
}

// readLine reads a response line, with the literals in it inline; a literal is checked
// to be the appended message whole (every message in the mailbox is one of them).
func (s *viewChecker) readLine() (string, error) {
	var out strings.Builder
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		l = strings.TrimRight(l, "\r\n")
		out.WriteString(l)
		m := reLiteral.FindStringSubmatch(l)
		if m == nil {
			return out.String(), nil
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(s.r, buf); err != nil {
			return "", err
		}
		if !strings.HasPrefix(string(buf), "Subject: s") || !strings.HasSuffix(string(buf), "body \r\n") {
			return "", fmt.Errorf("literal of %d bytes is not a whole message: %.80q", n, buf)
		}
	}
}

func (s *viewChecker) check(l string) error {
	if m := reExists.FindStringSubmatch(l); m != nil {
		n, _ := strconv.Atoi(m[1])
		if n < s.exists {
			return fmt.Errorf("EXISTS went down from %d: %q", s.exists, l)
		}
		s.exists = n
		return nil
	}
	if m := reExpunge.FindStringSubmatch(l); m != nil {
		n, _ := strconv.Atoi(m[1])
		if n < 1 || n > s.exists {
			return fmt.Errorf("seq too high (%d > %d): %q", n, s.exists, l)
		}
		s.exists--
		return nil
	}
	if m := reFlags.FindStringSubmatch(l); m != nil {
		s.keywords = map[string]bool{}
		for _, f := range strings.Fields(m[1]) {
			s.keywords[strings.ToLower(f)] = true
		}
		return nil
	}
	if m := reFetch.FindStringSubmatch(l); m != nil {
		n, _ := strconv.Atoi(m[1])
		if n < 1 || n > s.exists {
			return fmt.Errorf("seq too high (%d > %d): %q", n, s.exists, l)
		}
		if f := reFFlags.FindStringSubmatch(l); f != nil {
			for _, x := range strings.Fields(f[1]) {
				if !strings.HasPrefix(x, `\`) && !s.keywords[strings.ToLower(x)] {
					return fmt.Errorf("keyword %s used without being in FLAGS: %q", x, l)
				}
			}
		}
	}
	return nil
}
