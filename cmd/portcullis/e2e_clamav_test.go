package main

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/virus/clamdtest"
)

// e2eVirusRules are the default virus rules of virus/README.md: infected → 554 5.7.1,
// scanner unavailable → 451 4.7.1 (fail closed).
const e2eVirusRules = `policies:
  clamav:
    clamd:
      addrs: [%q]
      connect_timeout: 1s
      reply_timeout: 10s
      timeout: 15s
      failure_threshold: 2
      cooldown: 1s
rules:
  - name: virus
    stage: data
    if: clamav.fail
    reject: 554 5.7.1 "message rejected, infected with {{clamav.virus}}"
  - name: virus-scanner-down
    stage: data
    if: clamav.temperror
    tempfail: 451 4.7.1 "virus scanner unavailable, try again later"
`

// e2eVirusMessage is a message with a text part and, when infected, the EICAR test
// string base64-encoded in an attachment.
func e2eVirusMessage(id string, infected bool) string {
	attach := "just a text file\r\n"
	if infected {
		attach = clamdtest.EICAR
	}
	return fmt.Sprintf("From: a@example.net\r\nTo: postmaster@example.test\r\nSubject: %s\r\nDate: %s\r\n"+
		"Message-ID: <%s@e2e.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"+
		"--b1\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"+
		"--b1\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--b1--\r\n",
		id, time.Now().Format(time.RFC1123Z), id, base64.StdEncoding.EncodeToString([]byte(attach)))
}

// e2eSendTimed sends one message from 127.0.0.1 and returns the reply error and the
// moment the DATA command was sent (zero when the transaction failed before DATA).
// It is safe to call from other goroutines than the test's.
func e2eSendTimed(addr, id string, infected bool) (time.Time, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return time.Time{}, err
	}
	if err := conn.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		return time.Time{}, err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return time.Time{}, err
	}
	if err := c.Mail("a@example.net", nil); err != nil {
		return time.Time{}, err
	}
	if err := c.Rcpt("postmaster@example.test", nil); err != nil {
		return time.Time{}, err
	}
	start := time.Now()
	w, err := c.Data()
	if err != nil {
		return start, err
	}
	if _, err := w.Write([]byte(e2eVirusMessage(id, infected))); err != nil {
		return start, err
	}
	err = w.Close()
	_ = c.Quit()
	return start, err
}

var okScanRe = regexp.MustCompile(`(?m): OK$`)

// TestE2EClamAV runs the real binary against a real clamd on loopback:
//   - EICAR base64-encoded in a MIME attachment gets 554 5.7.1 naming the signature;
//   - a clean message gets 250 and is delivered;
//   - clamd is killed (SIGKILL) while four clients keep sending clean and infected mail:
//     every message whose DATA was sent after the kill gets 451 4.7.1, no infected
//     message is ever accepted, every delivered message is one that got 250 with its
//     DATA sent before the kill, and clamd's own log shows at least one clean scan per
//     accepted message (none was accepted unscanned);
//   - after clamd restarts, mail is accepted again (the breaker closes).
func TestE2EClamAV(t *testing.T) {
	clamd := clamdtest.StartClamd(t, clamdtest.Options{Config: []string{"LogClean yes"}})
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
	})
	cfg := e2eConfig(t, dir, dns, fmt.Sprintf(e2eVirusRules, clamd.TCPAddr()), "")
	t0 := time.Now()
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]
	t.Logf("server up after %v", time.Since(t0))

	_, err := e2eSendTimed(addr, "eicar-first", true)
	require.Equal(t, 554, smtpCode(err), "EICAR attachment: %v", err)
	require.Contains(t, smtpMessage(err), "5.7.1")
	require.Contains(t, smtpMessage(err), clamdtest.EICARSignature)
	_, err = e2eSendTimed(addr, "clean-first", false)
	require.NoError(t, err, "clean message")
	got := waitDelivered(t, dir, 1)
	require.Contains(t, got[0], "Subject: clean-first")

	// Clients send in a loop; clamd dies in the middle.
	type sent struct {
		id       string
		infected bool
		data     time.Time // DATA sent
		done     time.Time // reply received
		code     int
		reply    string
	}
	var (
		mu       sync.Mutex
		results  []sent
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		seq      int
		clients  = 4
		killedAt time.Time // clamd is dead
		killing  time.Time // SIGKILL about to be sent
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				seq++
				n := seq
				mu.Unlock()
				infected := n%3 == 0
				id := fmt.Sprintf("loop-%d", n)
				start, err := e2eSendTimed(addr, id, infected)
				mu.Lock()
				results = append(results, sent{id, infected, start, time.Now(), smtpCode(err), smtpMessage(err)})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	killing = time.Now()
	mu.Unlock()
	clamd.Kill()
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	accepted := map[string]bool{"clean-first": true}
	// clamd logs a clean scan just after sending its reply, so the kill can beat the log
	// line of a scan that was answered: allow for the acceptances around the kill.
	var before250, after451, afterTotal, nearKill int
	for _, r := range results {
		require.NotEqual(t, 0, r.code, "%s: no SMTP reply", r.id)
		require.False(t, r.data.IsZero(), "%s: refused before DATA (%d %s)", r.id, r.code, r.reply)
		if r.infected {
			require.Contains(t, []int{554, 451}, r.code, "infected %s: %d %s", r.id, r.code, r.reply)
		}
		if r.code == 250 {
			require.True(t, r.data.Before(killedAt), "%s accepted with DATA sent %v after the kill", r.id, r.data.Sub(killedAt))
			accepted[r.id] = true
			before250++
			if r.done.After(killing.Add(-200 * time.Millisecond)) {
				nearKill++
			}
		}
		if r.data.After(killedAt) {
			afterTotal++
			require.Equal(t, 451, r.code, "%s sent after the kill: %s", r.id, r.reply)
			require.Contains(t, r.reply, "4.7.1")
			after451++
		}
	}
	require.Positive(t, before250, "no message was accepted before the kill: the test proves nothing")
	require.Positive(t, after451, "no message was sent after the kill: the test proves nothing")
	scans := len(okScanRe.FindAllString(clamd.Log(), -1))
	require.GreaterOrEqual(t, scans, len(accepted)-nearKill, "clamd logged %d clean scans for %d accepted messages (%d answered near the kill)", scans, len(accepted), nearKill)
	t.Logf("%d messages in the loop: %d accepted before the kill (%d answered near it), %d/%d sent after it got 451; clamd logged %d clean scans",
		len(results), before250, nearKill, after451, afterTotal, scans)

	t.Logf("loop done after %v", time.Since(t0))
	// clamd is back: the breaker's probe finds it and mail flows again.
	clamd.Restart()
	var last error
	requireEventually(t, func() bool {
		_, last = e2eSendTimed(addr, "after-restart", false)
		return last == nil
	})
	accepted["after-restart"] = true
	t.Logf("accepting again after %v", time.Since(t0))

	// The maildir holds exactly the accepted messages, none infected.
	waitDelivered(t, dir, len(accepted))
	time.Sleep(300 * time.Millisecond)
	got = maildirMessages(t, dir)
	delivered := map[string]int{}
	for _, m := range got {
		subj := headerFields(m, "Subject")
		require.Len(t, subj, 1)
		delivered[subj[0]]++
		require.NotContains(t, m, base64.StdEncoding.EncodeToString([]byte(clamdtest.EICAR)), "infected message delivered")
	}
	for id := range delivered {
		require.True(t, accepted[id], "%s delivered without a 250", id)
	}
	for id := range accepted {
		require.GreaterOrEqual(t, delivered[id], 1, "%s got 250 but was not delivered", id)
	}
	require.NotContains(t, strings.ToLower(srv.logText()), "panic")
}

// TestE2EClamAVFailover: with two clamd daemons configured, killing one costs nothing:
// clean mail is still accepted and EICAR still rejected, scanned by the survivor (its log
// shows the scans).
func TestE2EClamAVFailover(t *testing.T) {
	first := clamdtest.StartClamd(t, clamdtest.Options{Config: []string{"LogClean yes"}})
	second := clamdtest.StartClamd(t, clamdtest.Options{Config: []string{"LogClean yes"}})
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
	})
	rules := strings.Replace(fmt.Sprintf(e2eVirusRules, first.TCPAddr()), fmt.Sprintf("[%q]", first.TCPAddr()),
		fmt.Sprintf("[%q, %q]", first.TCPAddr(), second.UnixAddr()), 1)
	cfg := e2eConfig(t, dir, dns, rules, "")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]

	for i := range 4 { // round-robin: both daemons scan
		_, err := e2eSendTimed(addr, fmt.Sprintf("both-up-%d", i), false)
		require.NoError(t, err)
	}
	require.Positive(t, len(okScanRe.FindAllString(first.Log(), -1)), "the first daemon never scanned")
	before := len(okScanRe.FindAllString(second.Log(), -1))
	require.Positive(t, before, "the second daemon never scanned")

	first.Kill()
	const n = 8
	for i := range n {
		_, err := e2eSendTimed(addr, fmt.Sprintf("one-down-%d", i), false)
		require.NoError(t, err, "clean message %d with one daemon down", i)
		_, err = e2eSendTimed(addr, fmt.Sprintf("eicar-one-down-%d", i), true)
		require.Equal(t, 554, smtpCode(err), "EICAR with one daemon down: %v", err)
		require.Contains(t, smtpMessage(err), clamdtest.EICARSignature)
	}
	// clamd writes its log line just after its reply: wait for the last one.
	requireEventually(t, func() bool { return len(okScanRe.FindAllString(second.Log(), -1))-before >= n })
	waitDelivered(t, dir, 4+n)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, maildirMessages(t, dir), 4+n, "exactly the accepted messages are delivered")
}

// TestE2EClamAVHung: a clamd that accepts connections but never answers (stopped with
// SIGSTOP, as an overloaded or wedged daemon looks) costs at most the reply timeout per
// message and gives 451, never 250; once the breaker is open the answer is immediate;
// after SIGCONT mail is scanned and accepted again.
func TestE2EClamAVHung(t *testing.T) {
	clamd := clamdtest.StartClamd(t, clamdtest.Options{})
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{})
	rules := strings.Replace(fmt.Sprintf(e2eVirusRules, clamd.TCPAddr()), "reply_timeout: 10s", "reply_timeout: 2s", 1)
	cfg := e2eConfig(t, dir, dns, rules, "")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]
	_, err := e2eSendTimed(addr, "before-hang", false)
	require.NoError(t, err)

	pidText, err := os.ReadFile(filepath.Join(clamd.Dir(), "clamd.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	for i := range 4 {
		start := time.Now()
		_, err := e2eSendTimed(addr, fmt.Sprintf("hung-%d", i), i%2 == 1)
		took := time.Since(start)
		require.Equal(t, 451, smtpCode(err), "message %d to a hung clamd: %v", i, err)
		// reply_timeout 2s, and one retry on a fresh connection when a reused session
		// fails; the DATA transfer itself is a few milliseconds.
		require.Less(t, took, 6*time.Second, "message %d waited %v", i, took)
		t.Logf("hung clamd: message %d answered 451 after %v", i, took.Round(time.Millisecond))
	}
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	requireEventually(t, func() bool {
		_, err := e2eSendTimed(addr, "after-cont", false)
		return err == nil
	})
	_, err = e2eSendTimed(addr, "eicar-after-cont", true)
	require.Equal(t, 554, smtpCode(err), "%v", err)
	waitDelivered(t, dir, 2)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, maildirMessages(t, dir), 2, "only before-hang and after-cont are delivered")
}
