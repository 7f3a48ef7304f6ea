package main

// Issue 19, items 2 and 3 through the real binary: greylisting (first attempt 451, an
// early retry 451, the retry after the delay accepted, the client auto-allowed after 5
// passes), the same with two processes sharing one Redis, and a flood from one address
// throttled with Postfix's replies while another address is served.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/redistest"
)

// greylistRules greylists at RCPT with a delay of delay and the auto-allow interval
// scaled down to 1s (postgrey's is an hour), in the given store.
func greylistRules(delay time.Duration, store string) string {
	return fmt.Sprintf(`policies:
  grey:
    greylist: { delay: %s, auto_allow_interval: 1s, %s }
rules:
  - name: greylist
    if: grey.greylisted
    tempfail: "{{grey.reply}}"
`, delay, store)
}

func greyMsg(from string) string {
	return "From: " + from + "\r\nTo: postmaster@example.test\r\nSubject: grey\r\n\r\nhello\r\n"
}

// attempt runs one transaction from src and returns the reply code of the first refusal
// (250 when delivered), the reply, and when it was sent and answered.
func greyAttempt(t *testing.T, addr, src, from string) (code int, msg string, sent, answered time.Time) {
	t.Helper()
	c := e2eDial(t, addr, src, "client.example.net")
	defer c.Close()
	sent = time.Now()
	_, err := e2eSend(c, from, "postmaster@example.test", greyMsg(from))
	return smtpCode(err), smtpMessage(err), sent, time.Now()
}

// checkRetry checks an early retry against the delay without timing assumptions: the
// server saw the two attempts at most answered-first apart and at least sent-answered
// apart; only a gap clearly inside or outside the delay is asserted.
func checkRetry(t *testing.T, delay time.Duration, firstSent, firstAnswered, sent, answered time.Time, code int, msg string) {
	t.Helper()
	switch {
	case answered.Sub(firstSent) < delay:
		require.Equal(t, 451, code, "a retry within the delay: %s", msg)
		require.Contains(t, msg, "4.7.1 <postmaster@example.test>: Recipient address rejected: Greylisted, try again in")
	case sent.Sub(firstAnswered) >= delay:
		require.Equal(t, 250, code, "a retry after the delay: %s", msg)
	default:
		t.Logf("retry too close to the delay to judge (machine busy): %d %s", code, msg)
	}
}

func TestE2EGreylist(t *testing.T) {
	dir := t.TempDir()
	const delay = 3 * time.Second
	cfg := e2eConfig(t, dir, dnstest.New(t, dnstest.Zone{}), greylistRules(delay, "store: sqlite"), "")
	srv := startServer(t, cfg, "mx")
	mx := srv.addrs["mx"]

	code, msg, s1, a1 := greyAttempt(t, mx, "127.0.0.2", "alice@remote.example")
	require.Equal(t, 451, code, msg)
	require.Contains(t, msg, "451 4.7.1 <postmaster@example.test>: Recipient address rejected: Greylisted, try again in 3 seconds")
	code, msg, s2, a2 := greyAttempt(t, mx, "127.0.0.2", "alice@remote.example")
	checkRetry(t, delay, s1, a1, s2, a2, code, msg)
	time.Sleep(delay - time.Since(a1) + 100*time.Millisecond)
	code, msg, _, _ = greyAttempt(t, mx, "127.0.0.2", "alice@remote.example")
	require.Equal(t, 250, code, msg)
	delivered := waitDelivered(t, dir, 1)
	require.Len(t, headerFields(delivered[0], "X-Greylist"), 1, "the first pass is marked")
	require.Contains(t, headerFields(delivered[0], "X-Greylist")[0], "by portcullis at mx.example.test")

	// Auto-allow: 127.0.0.3 passes greylisting with five senders, one pass counted per
	// interval (1s here), then a sixth sender is accepted at once.
	senders := []string{"bob@remote.example", "carol@remote.example", "dave@remote.example", "erin@remote.example", "frank@remote.example"}
	var last time.Time
	for _, s := range senders {
		code, msg, _, last = greyAttempt(t, mx, "127.0.0.3", s)
		require.Equal(t, 451, code, msg)
	}
	time.Sleep(delay - time.Since(last) + 100*time.Millisecond)
	for i, s := range senders {
		if i > 0 {
			time.Sleep(1200 * time.Millisecond) // each pass in its own interval
		}
		code, msg, _, _ = greyAttempt(t, mx, "127.0.0.3", s)
		require.Equal(t, 250, code, "%s: %s", s, msg)
	}
	code, msg, _, _ = greyAttempt(t, mx, "127.0.0.3", "grace@remote.example")
	require.Equal(t, 250, code, "an auto-allowed client: %s", msg)
	// Another client of the same /24 is not: auto-allow is per address.
	code, msg, _, _ = greyAttempt(t, mx, "127.0.0.4", "grace@remote.example")
	require.Equal(t, 451, code, msg)
	waitDelivered(t, dir, 7)
}

// TestE2EGreylistSharedRedis: two portcullis processes share the greylisting state in one
// Redis: the retry through the other process passes once the delay ran out.
func TestE2EGreylistSharedRedis(t *testing.T) {
	addr := redistest.Start(t)
	const delay = 3 * time.Second
	dns := dnstest.New(t, dnstest.Zone{})
	var mx [2]string
	var dirs [2]string
	for i := range mx {
		dirs[i] = t.TempDir()
		cfg := e2eConfig(t, dirs[i], dns, greylistRules(delay, `store: redis, redis: { addr: "`+addr+`" }`), "")
		mx[i] = startServer(t, cfg, "mx").addrs["mx"]
	}
	code, msg, s1, a1 := greyAttempt(t, mx[0], "127.0.0.2", "alice@remote.example")
	require.Equal(t, 451, code, msg)
	code, msg, s2, a2 := greyAttempt(t, mx[1], "127.0.0.2", "alice@remote.example")
	checkRetry(t, delay, s1, a1, s2, a2, code, msg)
	time.Sleep(delay - time.Since(a1) + 100*time.Millisecond)
	code, msg, _, _ = greyAttempt(t, mx[1], "127.0.0.2", "alice@remote.example")
	require.Equal(t, 250, code, msg)
	waitDelivered(t, dirs[1], 1)
	// And back through the first: the triplet is known.
	code, msg, _, _ = greyAttempt(t, mx[0], "127.0.0.2", "alice@remote.example")
	require.Equal(t, 250, code, msg)
}

// TestE2ERateLimitFlood: a flood of connections and messages from 127.0.0.2 is throttled
// with Postfix's replies (421 4.7.0 at connect past the connection rate, 450 4.7.1 at MAIL
// past the message rate) while 127.0.0.3 is served normally.
func TestE2ERateLimitFlood(t *testing.T) {
	dir := t.TempDir()
	cfg := e2eConfig(t, dir, dnstest.New(t, dnstest.Zone{}), "rules: []\n",
		"rate_limits: { client_connection_rate_limit: 5, client_message_rate_limit: 3, rate_time_unit: 1h }\n")
	srv := startServer(t, cfg, "mx")
	mx := srv.addrs["mx"]
	var codes []int
	for i := range 4 {
		c := e2eDial(t, mx, "127.0.0.2", "flood.example")
		_, err := e2eSend(c, fmt.Sprintf("f%d@remote.example", i), "postmaster@example.test", greyMsg("f@remote.example"))
		codes = append(codes, smtpCode(err))
		if i == 3 {
			require.Contains(t, smtpMessage(err), "450 4.7.1 Error: too much mail from 127.0.0.2")
		}
		c.Close()
	}
	require.Equal(t, []int{250, 250, 250, 450}, codes)
	// The sixth connection from the flooding address is refused before the greeting.
	buf := make([]byte, 512)
	conn, err := dialFrom(mx, "127.0.0.2", time.Now().Add(30*time.Second))
	require.NoError(t, err)
	n, _ := conn.Read(buf) // the fifth is greeted (and so counted before the sixth)
	require.True(t, strings.HasPrefix(string(buf[:n]), "220 "), "%q", buf[:n])
	require.NoError(t, conn.Close())
	conn, err = dialFrom(mx, "127.0.0.2", time.Now().Add(30*time.Second))
	require.NoError(t, err)
	defer conn.Close()
	n, _ = conn.Read(buf)
	require.True(t, strings.HasPrefix(string(buf[:n]), "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.2"), "%q", buf[:n])
	// Another client is served.
	c := e2eDial(t, mx, "127.0.0.3", "other.example")
	defer c.Close()
	_, err = e2eSend(c, "other@remote.example", "postmaster@example.test", greyMsg("other@remote.example"))
	require.NoError(t, err)
	waitDelivered(t, dir, 4)
	require.Contains(t, srv.logText(), "smtp rate limit exceeded")
	// Both refusals are in the decision log, with the limit as their category.
	recs := waitRecords(t, dir,
		func(r decisionlog.Record) bool { return r.Category == "rate_limit" && r.Stage == "mail" },
		func(r decisionlog.Record) bool { return r.Category == "rate_limit" && r.Stage == "connect" })
	require.Equal(t, "450 4.7.1 Error: too much mail from 127.0.0.2", recs[0].Reply)
	require.Equal(t, []string{"127.0.0.2", "tempfail", "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.2"},
		[]string{recs[1].ClientIP.String(), recs[1].Verdict, recs[1].Reply})
}

// TestE2EAccessMaps: Postfix access tables through the binary: a cidr: client table and
// a texthash: sender table answer Postfix's replies; after the table changes, SIGHUP
// re-reads it.
func TestE2EAccessMaps(t *testing.T) {
	dir := t.TempDir()
	clients := filepath.Join(dir, "client_access.cidr")
	senders := filepath.Join(dir, "sender_access")
	require.NoError(t, os.WriteFile(clients, []byte("127.0.0.2/32  REJECT no mail from here\n"), 0o644))
	require.NoError(t, os.WriteFile(senders, []byte("spam.example   550 5.7.1 go away\n"), 0o644))
	rules := fmt.Sprintf(`policies:
  clients: { check_client_access: "cidr:%s", check_interval: 1h }
  senders: { check_sender_access: "texthash:%s" }
rules:
  - name: client-access
    if: clients.reject
    reject: "{{clients.reply}}"
  - name: client-defer
    if: clients.defer
    tempfail: "{{clients.reply}}"
  - name: sender-access
    if: senders.reject
    reject: "{{senders.reply}}"
`, clients, senders)
	cfg := e2eConfig(t, dir, dnstest.New(t, dnstest.Zone{}), rules, "")
	srv := startServer(t, cfg, "mx")
	mx := srv.addrs["mx"]
	send := func(src, from string) (int, string) {
		c := e2eDial(t, mx, src, "client.example.net")
		defer c.Close()
		_, err := e2eSend(c, from, "postmaster@example.test", greyMsg(from))
		return smtpCode(err), smtpMessage(err)
	}
	code, msg := send("127.0.0.2", "a@remote.example")
	require.Equal(t, 554, code, msg)
	require.Equal(t, "554 5.7.1 <unknown[127.0.0.2]>: Client host rejected: no mail from here", msg)
	_, msg = send("127.0.0.3", "a@sub.spam.example")
	require.Equal(t, "550 5.7.1 <a@sub.spam.example>: Sender address rejected: go away", msg)
	code, msg = send("127.0.0.3", "a@remote.example")
	require.Equal(t, 250, code, msg)

	require.NoError(t, os.WriteFile(clients, []byte("127.0.0.0/29  DEFER try later\n"), 0o644))
	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGHUP))
	requireEventually(t, func() bool {
		code, _ := send("127.0.0.3", "a@remote.example")
		return code == 450
	})
	_, msg = send("127.0.0.4", "b@remote.example")
	require.Equal(t, "450 4.7.1 <unknown[127.0.0.4]>: Client host rejected: try later", msg)
}
