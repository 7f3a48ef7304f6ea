package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/spool"
)

// buildBinary compiles the portcullis binary once per test run, with the race detector.
var buildBinary = sync.OnceValues(func() (string, error) { return build("-race") })

// buildPlainBinary compiles the binary without the race detector, whose shadow memory
// would drown what the memory tests measure. PORTCULLIS_E2E_BIN names another binary
// instead (to measure an older build the same way).
var buildPlainBinary = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("PORTCULLIS_E2E_BIN"); bin != "" {
		return bin, nil
	}
	return build()
})

func build(flags ...string) (string, error) {
	dir, err := os.MkdirTemp("", "portcullis-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "portcullis")
	args := append(append([]string{"build"}, flags...), "-o", bin, ".")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// server is a running portcullis child process.
type server struct {
	cmd   *exec.Cmd
	addrs map[string]string // listener name -> address
	mu    sync.Mutex        // guards log
	log   *bytes.Buffer
	done  chan struct{}
}

// logText returns what the server logged so far.
func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

var listenRe = regexp.MustCompile(`msg=listening listener=(\S+) addr=(\S+)`)

// startServer starts `portcullis serve --config CFG` (built with -race) and waits until
// every listener of the config is up.
func startServer(t *testing.T, cfgPath string, want ...string) *server {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	return startBinary(t, bin, cfgPath, want...)
}

// startPlainServer is startServer with the binary of buildPlainBinary.
func startPlainServer(t *testing.T, cfgPath string, want ...string) *server {
	t.Helper()
	bin, err := buildPlainBinary()
	require.NoError(t, err)
	return startBinary(t, bin, cfgPath, want...)
}

// startBinary starts `BIN serve --config CFG`, waits until the listeners named by want
// are up, and kills the server when the test ends (a test may stop it earlier).
func startBinary(t *testing.T, bin, cfgPath string, want ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &server{cmd: cmd, addrs: map[string]string{}, log: &bytes.Buffer{}, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		live := map[string]string{}
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			if m := listenRe.FindStringSubmatch(line); m != nil && !signalled {
				// live collects the listeners; s.addrs is set once, before ready is
				// closed, and never written again, so tests read it without a lock.
				live[m[1]] = m[2]
				all := true
				for _, w := range want {
					if live[w] == "" {
						all = false
					}
				}
				if all {
					signalled = true
					s.addrs = maps.Clone(live)
					close(ready)
				}
			}
			s.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
	case <-s.done:
		t.Fatalf("server exited before listening:\n%s", s.logText())
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("server did not listen within 2 minutes:\n%s", s.logText())
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
	})
	return s
}

func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// writeConfig writes a config with every listener on a free loopback port and DNS served
// by an in-process dnstest server (never the machine's resolver) that knows the
// loopback client as localhost.example.test, forward-confirmed.
func writeConfig(t *testing.T, dir string, extra string) string {
	t.Helper()
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
	})
	cfg := fmt.Sprintf(`hostname: mx.example.test
data_dir: %s
local_domains: [example.test]
http: { addr: "" }
imap: { addr: "127.0.0.1:0" }
pop3: { addr: "127.0.0.1:0" }
managesieve: { addr: "127.0.0.1:0" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
%s`, filepath.Join(dir, "data"), dns.Addr(), extra)
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o644))
	return path
}

// sendOne sends one message and returns the reply error (nil for 250).
func sendOne(addr, id string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	msg := fmt.Sprintf("From: a@example.net\r\nTo: postmaster@example.test\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\nDate: %s\r\n\r\n%s\r\n",
		id, id, time.Now().Format(time.RFC1123Z), strings.Repeat("durable body line\r\n", 200))
	if err := c.SendMail("a@example.net", []string{"postmaster@example.test"}, strings.NewReader(msg)); err != nil {
		return err
	}
	_ = c.Quit()
	return nil
}

// TestDurabilityUnderSIGKILL starts the real binary, sends mail from several clients, kills
// the server with SIGKILL at random moments, restarts it, and checks that every message
// that got a 250 is kept (in the queue or delivered), exactly once.
func TestDurabilityUnderSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary several times")
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	var mu sync.Mutex
	acked := map[string]bool{}
	seq := 0
	const rounds, clients = 4, 6
	for round := range rounds {
		srv := startServer(t, cfg, "mx")
		addr := srv.addrs["mx"]
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					mu.Lock()
					seq++
					id := fmt.Sprintf("r%d-m%d", round, seq)
					mu.Unlock()
					if err := sendOne(addr, id); err == nil {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		srv.kill()
		cancel()
		wg.Wait()
	}
	require.NotEmpty(t, acked, "no message was ever accepted")

	// A last start recovers the spool and delivers everything; then stop it and count.
	srv := startServer(t, cfg, "mx")
	data := filepath.Join(dir, "data")
	requireEventually(t, func() bool { return len(queuedSubjects(t, data)) == 0 })
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.done
	kept := keptMessages(t, data)
	dups := 0
	for id := range acked {
		require.GreaterOrEqual(t, kept[id], 1, "message %s got 250 but was lost", id)
		dups += kept[id] - 1
	}
	// A kill between a maildir delivery and the fsync of its status record delivers that
	// message again after the restart (at least once, never lost): at most the messages
	// in delivery at each kill.
	require.LessOrEqual(t, dups, rounds*20, "more duplicates than deliveries in flight at the kills")
	t.Logf("%d messages acknowledged over %d SIGKILLs: none lost, %d delivered twice (crash during delivery), %d kept in all",
		len(acked), rounds, dups, len(kept))
}

var subjectRe = regexp.MustCompile(`(?m)^Subject: (\S+)\r?$`)

// queuedSubjects lists the Subject of every message still in the queue, read through the
// spool (a shared open, as the queue commands do, beside a running server).
func queuedSubjects(t *testing.T, data string) []string {
	t.Helper()
	sp, err := spool.Open(filepath.Join(data, "queue"), spool.Config{Shared: true})
	require.NoError(t, err)
	defer sp.Close()
	ids, err := sp.List()
	require.NoError(t, err)
	var out []string
	for _, id := range ids {
		_, m, err := sp.Open(id)
		if err != nil {
			continue // delivered meanwhile
		}
		head, _ := io.ReadAll(io.LimitReader(m, 64<<10))
		m.Close()
		if sm := subjectRe.FindSubmatch(head); sm != nil {
			out = append(out, string(sm[1]))
		}
	}
	return out
}

// keptMessages counts, by Subject, the messages in the queue and in the maildirs.
func keptMessages(t *testing.T, data string) map[string]int {
	t.Helper()
	kept := map[string]int{}
	for _, s := range queuedSubjects(t, data) {
		kept[s]++
	}
	count := func(path string) {
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		head, _ := io.ReadAll(io.LimitReader(f, 64<<10))
		if m := subjectRe.FindSubmatch(head); m != nil {
			kept[string(m[1])]++
		}
	}
	for _, pattern := range []string{"mail/*/*/Maildir/new/*", "mail/*/*/Maildir/cur/*"} {
		files, err := filepath.Glob(filepath.Join(data, pattern))
		require.NoError(t, err)
		for _, f := range files {
			count(f)
		}
	}
	return kept
}

// TestServeRejectsUnknownConfigKey: the config is strict and the error names the key.
func TestServeRejectsUnknownConfigKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("hostname: x.example\nlistenres: []\n"), 0o644))
	bin, err := buildBinary()
	require.NoError(t, err)
	out, err := exec.Command(bin, "serve", "--config", path).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "unknown key listenres")
}

// TestEndToEndDefaultRules sends through the real binary with the default rule file:
// clean mail is accepted, an executable attachment and a non-FQDN HELO are rejected.
func TestEndToEndDefaultRules(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	// Loopback is trusted by default; make it untrusted so the HELO rules apply.
	require.NoError(t, appendFile(cfg, "trusted_networks: [192.0.2.0/24]\n"))
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]

	require.NoError(t, sendOne(addr, "clean"))

	exe := "From: a@example.net\r\nTo: postmaster@example.test\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=\"invoice.pdf.exe\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA==\r\n--b--\r\n"
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	require.NoError(t, c.Hello("client.example.net"))
	err = c.SendMail("a@example.net", []string{"postmaster@example.test"}, strings.NewReader(exe))
	var se *smtp.SMTPError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 554, se.Code)
	require.Contains(t, se.Message, "invoice.pdf.exe")
	c.Close()

	c, err = smtp.Dial(addr)
	require.NoError(t, err)
	require.NoError(t, c.Hello("localhost"))
	require.NoError(t, c.Mail("a@example.net", nil))
	err = c.Rcpt("postmaster@example.test", nil)
	require.ErrorAs(t, err, &se)
	require.Equal(t, 504, se.Code, "non-FQDN HELO, answered at RCPT (delay_reject)")
	c.Close()
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}
