package main

// Issue 21: "an imaptest stress run with clients spread over the proxy and a direct
// connection to the back-end shows no checkpoint inconsistencies". imaptest takes one
// host and port, so a TCP splitter in the test hands its connections alternately to the
// proxy's imaps listener and to the back-end's own (both TLS end to end: the splitter
// relays bytes); every client of a user then works on the same mailbox through two paths
// at once, and imaptest checks each reply against its model of the mailbox, which the
// clients of a user share (a message's UID, size, envelope and body seen by one client
// must be what the others see).
//
// imaptest's own checkpoints (checkpoint=N: all clients of a user stop, send CHECK and
// compare UIDs, flags and keywords) cannot be used: the imaptest this repository builds
// (release-2.3 at 0de0dbf) aborts within seconds in that mode on its own assertions
// (array.c "idx < array->buffer->used" from client_dirty_all_flags, checkpoint.c:314,
// client-state.c:222), against Dovecot 2.3.19 just as against portcullis. The test makes
// the checkpoint itself when imaptest is done: for each user, the mailbox as one session
// through the proxy and one direct session see it (UIDVALIDITY, UIDNEXT, every UID with
// its flags, size and Message-ID) must be the same.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// The loopback addresses the splitter dials from: the back-end takes PROXY headers only
// from 127.0.0.1 (the proxy), so its direct clients must come from elsewhere, and the
// back-end's log then tells the two paths apart (the proxy's header names its client).
const (
	stressViaProxySrc = "127.0.0.8"
	stressDirectSrc   = "127.0.0.9"
	stressUsers       = 3
)

// splitTarget is where the splitter sends a connection, and from which local address.
type splitTarget struct{ addr, src string }

// splitter accepts TCP connections and relays each to the next of its targets in turn.
type splitter struct {
	ln      net.Listener
	targets []splitTarget
	counts  []atomic.Int64 // connections relayed to each target
	next    atomic.Int64
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func startSplitter(t *testing.T, targets ...splitTarget) *splitter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &splitter{ln: ln, targets: targets, counts: make([]atomic.Int64, len(targets)), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *splitter) addr() string { return s.ln.Addr().String() }

func (s *splitter) track(c net.Conn, on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		delete(s.conns, c)
		return true
	}
	if s.conns == nil { // closed
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *splitter) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		i := int(s.next.Add(1)-1) % len(s.targets)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			up, err := dialFrom(s.targets[i].addr, s.targets[i].src, time.Time{})
			if err != nil {
				return // the client sees the connection closed, and imaptest says so
			}
			defer up.Close()
			if !s.track(c, true) || !s.track(up, true) {
				return
			}
			defer s.track(c, false)
			defer s.track(up, false)
			s.counts[i].Add(1)
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite() // pass the half-close on (a LOGOUT's last reply)
				}
				done <- struct{}{}
			}
			go pipe(up, c)
			go pipe(c, up)
			<-done
			<-done
		}()
	}
}

func (s *splitter) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// stressResult is what one imaptest stress run printed.
type stressResult struct {
	errs   []string       // every Error:, Panic: and Fatal: line
	totals map[string]int // the Totals line, by column ("Logi", "Stor", ...)
}

var imaptestErrRe = regexp.MustCompile(`^(Error|Panic|Fatal): `)

// parseImaptestStress reads a stress run's output: problems are logged by Dovecot's
// library as "Error: ...", "Panic: ...", "Fatal: ..." (a reply that contradicts the model:
// "Error: USER[N]: ..."), and at the end "Totals:" is followed by the column names and
// their counts.
func parseImaptestStress(out string) (stressResult, error) {
	r := stressResult{totals: map[string]int{}}
	var cols []string
	inTotals := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if imaptestErrRe.MatchString(line) {
			r.errs = append(r.errs, line)
			continue
		}
		f := strings.Fields(line)
		switch {
		case strings.TrimSpace(line) == "Totals:":
			inTotals, cols = true, nil
		case inTotals && len(f) > 0 && f[0] == "Logi":
			cols = f
		case inTotals && cols != nil && len(f) >= len(cols) && isNumbers(f):
			for i, c := range cols {
				r.totals[c], _ = strconv.Atoi(f[i])
			}
			inTotals = false
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if len(r.totals) == 0 {
		return r, errors.New("imaptest printed no totals")
	}
	return r, nil
}

func isNumbers(f []string) bool {
	for _, s := range f {
		if _, err := strconv.Atoi(s); err != nil {
			return false
		}
	}
	return true
}

// runImaptestStress runs imaptest's stress mode for secs seconds through addr (implicit
// TLS) as users stress1..stressN@example.test, 12 clients.
func runImaptestStress(t *testing.T, dir, addr, mbox string, secs int) (stressResult, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	// secs=N,5: at N seconds the clients log out, and at most 5 s more are waited for.
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "run"), "host="+host, "port="+port, "ssl=any-cert",
		"user=stress%d@example.test", fmt.Sprintf("users=%d", stressUsers), "pass="+proxyPassword,
		"clients=12", fmt.Sprintf("secs=%d,5", secs), "mbox="+mbox)
	cmd.Dir = t.TempDir()
	start := time.Now()
	b, err := cmd.CombinedOutput()
	out := string(b)
	t.Logf("imaptest stress ran %v (exit: %v)", time.Since(start).Round(time.Second), err)
	if ctx.Err() != nil {
		t.Fatalf("imaptest did not finish in time; its output:\n%s", tail(out, 4000))
	}
	r, err := parseImaptestStress(out)
	if err != nil {
		t.Fatalf("%v; imaptest printed:\n%s", err, tail(out, 4000))
	}
	t.Logf("imaptest totals: %v", r.totals)
	return r, out
}

// writeStressMbox writes an mbox of n messages for imaptest to APPEND: plain and
// multipart, of a few sizes, each with a well-formed Message-ID (imaptest checks the
// server's ENVELOPE and BODYSTRUCTURE against its own parse of these).
func writeStressMbox(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "From sender%d@example.net Thu Jan  1 00:00:00 2015\n", i%5)
		fmt.Fprintf(&b, "From: Sender %d <sender%d@example.net>\nTo: stress@example.test\n", i%5, i%5)
		fmt.Fprintf(&b, "Subject: stress message %d\nDate: Thu, 01 Jan 2015 00:%02d:00 +0000\n", i, i%60)
		fmt.Fprintf(&b, "Message-ID: <stress%d@example.net>\nMIME-Version: 1.0\n", i)
		body := strings.Repeat(fmt.Sprintf("line %d of message %d, some words to search\n", i, i), 1+(i*7)%60)
		if i%3 == 0 {
			fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=\"b%d\"\n\n", i)
			fmt.Fprintf(&b, "--b%d\nContent-Type: text/plain; charset=us-ascii\n\n%s\n", i, body)
			fmt.Fprintf(&b, "--b%d\nContent-Type: text/html; charset=us-ascii\n\n<p>%s</p>\n--b%d--\n", i, body, i)
		} else {
			fmt.Fprintf(&b, "Content-Type: text/plain; charset=us-ascii\n\n%s", body)
		}
		b.WriteString("\n")
	}
	path := filepath.Join(t.TempDir(), "stress.mbox")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// limitsOff lifts an IMAP listener's connection limits: every imaptest client comes
// from one address, as the same user, many at once.
const limitsOff = `max_connections_per_ip: -1, max_login_connections: -1, max_user_connections: -1, max_user_ip_connections: -1`

// TestImaptestStressProxy runs imaptest's stress mode (random commands from 12 clients
// for 12 s, every reply checked against its model of the mailbox, which the clients of a
// user share) with each connection sent, alternately, through a mode: proxy process or
// straight to the back-end's imaps listener: both paths serve one mailbox per user (users
// in the PostgreSQL directory). imaptest must report no error, and afterwards a session
// through the proxy and a direct one must see each user's mailbox the same (the
// checkpoint). A second run sends every other connection to another server holding the
// same users (a misroute), and both checks must then fail: they see what they look for.
func TestImaptestStressProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs imaptest's stress mode through the proxy and directly (about 50 s)")
	}
	dir := imaptestDir(t)
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	ctx := context.Background()
	dirdb, err := directory.OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	defer dirdb.Close()
	// A cheap hash: imaptest logs in hundreds of times; the cost of argon2 is not the
	// subject here (the proxy's and back-end's verified-login caches would hide it anyway).
	hash, err := auth.HashPassword(proxyPassword, auth.Argon2Params{Memory: bytesize.MiB, Iterations: 1, Parallelism: 1})
	require.NoError(t, err)
	for i := 1; i <= stressUsers; i++ {
		require.NoError(t, dirdb.Put(ctx, directory.User{Address: fmt.Sprintf("stress%d@example.test", i), MailHost: "store1", PasswordHash: hash}))
	}
	secret := filepath.Join(t.TempDir(), "master.secret")
	require.NoError(t, os.WriteFile(secret, []byte("stress-master-secret-0123456789abcdef\n"), 0o600))
	dns := dnstest.New(t, dnstest.Zone{})

	bdir := t.TempDir()
	bcfg := filepath.Join(bdir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(bcfg, []byte(fmt.Sprintf(`hostname: store1.example.test
mode: backend
data_dir: %s
local_domains: [example.test]
trusted_networks: [192.0.2.0/24]
postmaster: postmaster@example.test
http: { addr: "" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp: { listeners: [{ name: lmtp, addr: "127.0.0.1:0", mode: lmtp }] }
imap: { addr: "127.0.0.1:0", tls_addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32], %s }
pop3: { addr: "" }
managesieve: { addr: "" }
proxy: { master_user: proxy, master_secret_file: %q }
directory: { postgres: %q, this_host: store1 }
`, filepath.Join(bdir, "data"), dns.Addr(), limitsOff, secret, dsn)), 0o644))
	store := startPlainServer(t, bcfg, "imap", "imaps")

	pdir := t.TempDir()
	pcfg := filepath.Join(pdir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(pcfg, []byte(fmt.Sprintf(`hostname: proxy.example.test
mode: proxy
data_dir: %s
http: { addr: "" }
log: { level: info }
directory: { postgres: %q }
proxy:
  imaps_addr: "127.0.0.1:0"
  max_connections_per_ip: -1
  max_login_connections: -1
  master_user: proxy
  master_secret_file: %q
  backends:
    store1: { imap: %q }
`, filepath.Join(pdir, "data"), dsn, secret, store.addrs["imap"])), 0o644))
	px := startPlainServer(t, pcfg, "proxy-imaps")
	mbox := writeStressMbox(t, 40)

	t.Run("spread", func(t *testing.T) {
		sp := startSplitter(t, splitTarget{px.addrs["proxy-imaps"], stressViaProxySrc}, splitTarget{store.addrs["imaps"], stressDirectSrc})
		r, out := runImaptestStress(t, dir, sp.addr(), mbox, 12)
		sp.close()
		for _, l := range r.errs {
			t.Errorf("imaptest: %s", l)
		}
		if len(r.errs) > 0 {
			t.Logf("imaptest printed:\n%s", tail(out, 6000))
		}
		// The run did what it says: many sessions on both paths, all logged in on the one
		// back-end (its log names the proxy's client or the direct one), mail added,
		// changed and expunged.
		t.Logf("connections via the proxy %d, direct %d", sp.counts[0].Load(), sp.counts[1].Load())
		require.Greater(t, r.totals["Logi"], 20, "too few logins for a stress run")
		for _, c := range []string{"Appe", "Stor", "Expu", "Fetc"} {
			require.Greater(t, r.totals[c], 0, "imaptest ran no %s", c)
		}
		require.Greater(t, sp.counts[0].Load(), int64(5))
		require.Greater(t, sp.counts[1].Load(), int64(5))
		log := store.logText()
		require.True(t, logHas(log, `msg="imap login"`, "remote="+stressViaProxySrc), "no login through the proxy in the back-end's log")
		require.True(t, logHas(log, `msg="imap login"`, "remote="+stressDirectSrc), "no direct login in the back-end's log")

		// The checkpoint: both paths see every mailbox the same (and not every one empty).
		total := 0
		for i := 1; i <= stressUsers; i++ {
			user := fmt.Sprintf("stress%d@example.test", i)
			viaProxy := mailboxState(t, px.addrs["proxy-imaps"], stressViaProxySrc, user)
			direct := mailboxState(t, store.addrs["imaps"], stressDirectSrc, user)
			if d := viaProxy.diff(direct); d != "" {
				t.Errorf("%s: the mailbox through the proxy and directly differ:\n%s", user, d)
			}
			t.Logf("%s: %d messages, UIDNEXT %d, the same on both paths", user, len(direct.msgs), direct.uidNext)
			total += len(direct.msgs)
		}
		require.Positive(t, total, "every mailbox was empty at the checkpoint")
	})

	// A known-bad run: every other connection goes to a server of its own that has the
	// same users and password but another mailbox. imaptest must report errors, and the
	// checkpoint must find the two paths' mailboxes different; if they did not, a clean
	// "spread" run would prove nothing.
	t.Run("misrouted", func(t *testing.T) {
		odir := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(odir, "data"), 0o700))
		db, err := auth.OpenDB(auth.DefaultDBPath(filepath.Join(odir, "data")))
		require.NoError(t, err)
		for i := 1; i <= stressUsers; i++ {
			require.NoError(t, db.Add(ctx, fmt.Sprintf("stress%d@example.test", i), proxyPassword))
		}
		require.NoError(t, db.Close())
		ocfg := filepath.Join(odir, "portcullis.yaml")
		require.NoError(t, os.WriteFile(ocfg, []byte(fmt.Sprintf(`hostname: other.example.test
data_dir: %s
local_domains: [example.test]
postmaster: postmaster@example.test
http: { addr: "" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp: { listeners: [{ name: mx, addr: "127.0.0.1:0", mode: mx }] }
imap: { addr: "", tls_addr: "127.0.0.1:0", %s }
pop3: { addr: "" }
managesieve: { addr: "" }
`, filepath.Join(odir, "data"), dns.Addr(), limitsOff)), 0o644))
		other := startPlainServer(t, ocfg, "imaps")
		sp := startSplitter(t, splitTarget{px.addrs["proxy-imaps"], stressViaProxySrc}, splitTarget{other.addrs["imaps"], stressDirectSrc})
		r, out := runImaptestStress(t, dir, sp.addr(), mbox, 5)
		sp.close()
		t.Logf("imaptest reported %d errors; the first: %s", len(r.errs), strings.Join(r.errs[:min(3, len(r.errs))], " | "))
		if len(r.errs) == 0 {
			t.Errorf("imaptest found nothing wrong in a misrouted run; it printed:\n%s", tail(out, 6000))
		}
		differ := 0
		for i := 1; i <= stressUsers; i++ {
			user := fmt.Sprintf("stress%d@example.test", i)
			if d := mailboxState(t, px.addrs["proxy-imaps"], stressViaProxySrc, user).diff(mailboxState(t, other.addrs["imaps"], stressDirectSrc, user)); d != "" {
				differ++
				t.Logf("%s: the checkpoint found, as it should:\n%s", user, shorten(d, 300))
			}
		}
		require.Equal(t, stressUsers, differ, "the checkpoint found a misrouted user's two mailboxes the same")
	})
}

// boxState is a mailbox as one session sees it.
type boxState struct {
	uidValidity, uidNext uint32
	msgs                 map[imap.UID]string // flags, size and Message-ID
}

// mailboxState logs user in at addr (implicit TLS) from src and reads INBOX: its
// UIDVALIDITY and UIDNEXT, and each message's flags (sorted), RFC822.SIZE and Message-ID.
// EXAMINE, so that reading changes nothing (no \Seen, no \Recent taken).
func mailboxState(t *testing.T, addr, src, user string) boxState {
	t.Helper()
	conn, err := dialFrom(addr, src, time.Now().Add(time.Minute))
	require.NoError(t, err)
	c := imapclient.New(tls.Client(conn, &tls.Config{InsecureSkipVerify: true}), nil)
	defer c.Close()
	require.NoError(t, c.Login(user, proxyPassword).Wait())
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err)
	st := boxState{uidValidity: sel.UIDValidity, uidNext: uint32(sel.UIDNext), msgs: map[imap.UID]string{}}
	if sel.NumMessages > 0 {
		var all imap.SeqSet
		all.AddRange(1, sel.NumMessages)
		msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, Envelope: true}).Collect()
		require.NoError(t, err)
		for _, m := range msgs {
			flags := make([]string, 0, len(m.Flags))
			for _, f := range m.Flags {
				flags = append(flags, strings.ToLower(string(f)))
			}
			slices.Sort(flags)
			id := ""
			if m.Envelope != nil {
				id = m.Envelope.MessageID
			}
			st.msgs[m.UID] = fmt.Sprintf("(%s) %d <%s>", strings.Join(flags, " "), m.RFC822Size, id)
		}
	}
	require.NoError(t, c.Logout().Wait())
	return st
}

// diff describes how o differs from s ("" when it does not).
func (s boxState) diff(o boxState) string {
	var b strings.Builder
	if s.uidValidity != o.uidValidity {
		fmt.Fprintf(&b, "  UIDVALIDITY %d != %d\n", s.uidValidity, o.uidValidity)
	}
	if s.uidNext != o.uidNext {
		fmt.Fprintf(&b, "  UIDNEXT %d != %d\n", s.uidNext, o.uidNext)
	}
	uids := slices.Collect(maps.Keys(s.msgs))
	for u := range o.msgs {
		if _, ok := s.msgs[u]; !ok {
			uids = append(uids, u)
		}
	}
	slices.Sort(uids)
	for _, u := range uids {
		if a, c := s.msgs[u], o.msgs[u]; a != c {
			fmt.Fprintf(&b, "  UID %d: %q != %q\n", u, a, c)
		}
	}
	return b.String()
}

func TestParseImaptestStress(t *testing.T) {
	out := `     0/ 12
Logi List Stat Sele Fetc Fet2 Stor Dele Expu Appe Logo Chec
100%  50%  50% 100% 100% 100%  50% 100% 100% 100% 100%
                          30%                  5%
  12    5    6   11   10    9    4    8    7    6    9    3   0/ 12
Error: stress2@example.test[4]: Checkpoint: client 4: Message seq=3 UID 7 != 9
Warning: stress1@example.test[1]: Stalled
Error: Checkpoint: client 7: Mailbox has only 5 of 7 messages
Error: stress3@example.test[2]: UIDNEXT shrank from 12 to 9
Panic: file mailbox.c: line 1: assertion failed

Totals:
Logi List Stat Sele Fetc Fet2 Stor Dele Expu Appe Logo Chec
100%  50%  50% 100% 100% 100%  50% 100% 100% 100% 100%
                          30%                  5%
 412  205  198  400  395  380  190  377  370  200  405   42
`
	r, err := parseImaptestStress(out)
	require.NoError(t, err)
	require.Len(t, r.errs, 4)
	require.Equal(t, 412, r.totals["Logi"])
	require.Equal(t, 42, r.totals["Chec"])
	_, err = parseImaptestStress("Error: something\n")
	require.Error(t, err)
}

// TestBoxStateDiff: the checkpoint tells apart two views of one mailbox that agree on
// UIDVALIDITY and UIDNEXT (the misrouted run's mailboxes differ in UIDVALIDITY already,
// so it does not show that a message's flags, size or presence are compared).
func TestBoxStateDiff(t *testing.T) {
	a := boxState{uidValidity: 7, uidNext: 5, msgs: map[imap.UID]string{1: "() 10 <a@x>", 3: "(\\seen) 20 <b@x>"}}
	same := boxState{uidValidity: 7, uidNext: 5, msgs: map[imap.UID]string{3: "(\\seen) 20 <b@x>", 1: "() 10 <a@x>"}}
	require.Empty(t, a.diff(same))
	for name, b := range map[string]boxState{
		"flags":   {uidValidity: 7, uidNext: 5, msgs: map[imap.UID]string{1: "() 10 <a@x>", 3: "() 20 <b@x>"}},
		"size":    {uidValidity: 7, uidNext: 5, msgs: map[imap.UID]string{1: "() 11 <a@x>", 3: "(\\seen) 20 <b@x>"}},
		"missing": {uidValidity: 7, uidNext: 5, msgs: map[imap.UID]string{1: "() 10 <a@x>"}},
		"extra":   {uidValidity: 7, uidNext: 5, msgs: map[imap.UID]string{1: "() 10 <a@x>", 2: "() 5 <c@x>", 3: "(\\seen) 20 <b@x>"}},
		"uidnext": {uidValidity: 7, uidNext: 6, msgs: a.msgs},
	} {
		if a.diff(b) == "" || b.diff(a) == "" {
			t.Errorf("%s: no difference found between %v and %v", name, a, b)
		}
	}
}
