package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// The users of the proxy test and their mail hosts: store1 reads them from the
// PostgreSQL directory (no local users), store2 has them in its own user database, and
// store3 is the proxy's own node (proxy_maybe). A session sent to the wrong back-end
// would log in there too (the master login takes any user of the directory) and show
// the wrong mailbox, and the test would see it.
var proxyUsers = map[string]string{ // address -> mail host
	"alice@example.test": "store1",
	"bob@example.test":   "store2",
	"carol@example.test": "store3",
}

const proxyPassword = "proxy test password 1"

// startNode starts a portcullis process, with the proxy users in its user database if
// users;
// section is its imap/pop3/proxy/directory configuration, want the listeners to wait for.
func startNode(t *testing.T, name string, dns *dnstest.Server, users bool, section string, want ...string) *server {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	require.NoError(t, os.MkdirAll(data, 0o700))
	db, err := auth.OpenDB(auth.DefaultDBPath(data))
	require.NoError(t, err)
	for u := range proxyUsers {
		if users {
			require.NoError(t, db.Add(context.Background(), u, proxyPassword))
		}
	}
	require.NoError(t, db.Close())
	cfg := filepath.Join(dir, "portcullis.yaml")
	if !strings.Contains(section, "\nmanagesieve:") && !strings.HasPrefix(section, "managesieve:") {
		section = "managesieve: { addr: \"\" }\n" + section
	}
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: %s.example.test
data_dir: %s
local_domains: [example.test]
trusted_networks: [192.0.2.0/24, 127.0.0.1/32] # the proxy delivers by LMTP from 127.0.0.1
postmaster: postmaster@example.test
http: { addr: "" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
    - { name: lmtp, addr: "127.0.0.1:0", mode: lmtp }
%s`, name, data, dns.Addr(), section)), 0o644))
	return startServer(t, cfg, append([]string{"mx"}, want...)...)
}

// imapFrom logs user in over implicit TLS to addr from the loopback address src.
func imapTLSFrom(t *testing.T, addr, src, user string) *imapclient.Client {
	t.Helper()
	conn, err := dialFrom(addr, src, time.Time{})
	require.NoError(t, err)
	c := imapclient.New(tls.Client(conn, &tls.Config{InsecureSkipVerify: true}), nil)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.Login(user, proxyPassword).Wait())
	return c
}

// inboxSubjects lists the subjects in user's INBOX.
func inboxSubjects(t *testing.T, c *imapclient.Client) []string {
	t.Helper()
	sel, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet // 1:N (imap.SeqSetNum(1, N) would be the two messages 1 and N)
	all.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(all, &imap.FetchOptions{Envelope: true}).Collect()
	require.NoError(t, err)
	var out []string
	for _, m := range msgs {
		out = append(out, m.Envelope.Subject)
	}
	return out
}

// appendMsg appends a message saying where user lives.
func appendMsg(t *testing.T, c *imapclient.Client, user, host string) {
	t.Helper()
	msg := fmt.Sprintf("From: x@example.test\r\nTo: %s\r\nSubject: %s on %s\r\n\r\nbody\r\n", user, user, host)
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	_, err := cmd.Write([]byte(msg))
	require.NoError(t, err)
	require.NoError(t, cmd.Close())
	_, err = cmd.Wait()
	require.NoError(t, err)
}

// TestProxyTwoStores runs two back-end processes and a proxy process that is also a
// back-end (proxy_maybe), the directory in PostgreSQL, the proxy logging in to
// back-ends with a master credential: each user, through the proxy, reaches the mailbox
// on their own back-end — store1 over a plaintext link, authenticating its direct
// clients from the shared directory; store2 over TLS, with its own user database; the
// proxy's own users in process. The back-ends log the real client address (PROXY v2);
// a back-end killed is found down by the health check and gives its users a temporary
// error, leaving the others alone.
func TestProxyTwoStores(t *testing.T) {
	pg := pgtest.Start(t)
	dns := dnstest.New(t, dnstest.Zone{})
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pg)
	dirdb, err := directory.OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	defer dirdb.Close()
	hash, err := auth.HashPassword(proxyPassword, auth.DefaultArgon2Params)
	require.NoError(t, err)
	for user, host := range proxyUsers {
		require.NoError(t, dirdb.Put(ctx, directory.User{Address: user, MailHost: host, PasswordHash: hash}))
	}
	secret := filepath.Join(t.TempDir(), "master.secret")
	require.NoError(t, os.WriteFile(secret, []byte("e2e-master-secret-0123456789abcdef0123\n"), 0o600))
	master := fmt.Sprintf("proxy: { master_user: proxy, master_secret_file: %q }\n", secret)

	stores := map[string]*server{
		// store1: the shared directory, a plaintext listener for the proxy (which takes
		// logins only with the PROXY header's TLS flag) and imaps/pop3s for direct clients.
		"store1": startNode(t, "store1", dns, false, fmt.Sprintf(`imap: { addr: "127.0.0.1:0", tls_addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
pop3: { addr: "127.0.0.1:0", tls_addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
managesieve: { addr: "127.0.0.1:0" }
directory: { postgres: %q }
`, dsn)+master, "imap", "imaps", "pop3", "pop3s", "managesieve"),
		// store2: its own users, TLS from the proxy.
		"store2": startNode(t, "store2", dns, true, `imap: { addr: "", tls_addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
pop3: { addr: "", tls_addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
`+master, "imaps", "pop3s", "lmtp"),
	}

	// One message per user of store1 and store2, appended directly (from 127.0.0.2, not a
	// trusted proxy): on store1 with the directory's password.
	for user, host := range proxyUsers {
		if st := stores[host]; st != nil {
			c := imapTLSFrom(t, st.addrs["imaps"], "127.0.0.2", user)
			appendMsg(t, c, user, host)
			require.NoError(t, c.Logout().Wait())
		}
	}
	// The proxy: a third process, with the directory (mail hosts and password hashes) in
	// PostgreSQL and no users of its own; store3 is itself.
	section := fmt.Sprintf(`imap: { addr: "" }
pop3: { addr: "" }
directory: { postgres: %q }
proxy:
  imap_addr: "127.0.0.1:0"
  pop3s_addr: "127.0.0.1:0"
  managesieve_addr: "127.0.0.1:0"
  lmtp_addr: "127.0.0.1:0"
  master_user: proxy
  master_secret_file: %q
  health_interval: 200ms
  proxy_maybe: true
  local_host: store3
  backends:
    store1: { imap: %q, pop3: %q, managesieve: %q }
    store2: { imap: %q, pop3: %q, lmtp: %q, tls: true, insecure_skip_verify: true }
`, dsn, secret, stores["store1"].addrs["imap"], stores["store1"].addrs["pop3"], stores["store1"].addrs["managesieve"],
		stores["store2"].addrs["imaps"], stores["store2"].addrs["pop3s"], stores["store2"].addrs["lmtp"])
	px := startNode(t, "proxy", dns, false, section, "proxy-imap", "proxy-pop3s", "proxy-managesieve", "proxy-lmtp")
	imapAddr, pop3Addr := px.addrs["proxy-imap"], px.addrs["proxy-pop3s"]
	logs := map[string]*server{"store1": stores["store1"], "store2": stores["store2"], "store3": px}

	proxyIMAP := func(t *testing.T, user string) (*imapclient.Client, error) {
		conn, err := dialFrom(imapAddr, "127.0.0.3", time.Time{})
		require.NoError(t, err)
		c, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c, c.Login(user, proxyPassword).Wait()
	}
	// carol lives on the proxy's node: her message is appended through the proxy.
	c, err := proxyIMAP(t, "carol@example.test")
	require.NoError(t, err)
	appendMsg(t, c, "carol@example.test", "store3")
	require.NoError(t, c.Logout().Wait())

	t.Run("imap", func(t *testing.T) {
		for user, host := range proxyUsers {
			c, err := proxyIMAP(t, user)
			require.NoError(t, err)
			require.Equal(t, []string{user + " on " + host}, inboxSubjects(t, c), "%s reached the wrong mailbox", user)
			require.NoError(t, c.Logout().Wait())
			// The back-end saw the client (127.0.0.3), not the proxy (127.0.0.1).
			requireEventually(t, func() bool {
				return logHas(logs[host].logText(), `msg="imap login"`, "user="+user, "remote=127.0.0.3")
			})
		}
		for name, st := range stores {
			require.NotContains(t, st.logText(), "carol@", "%s saw the proxy's own user", name)
		}
	})

	t.Run("imap-refusals", func(t *testing.T) {
		// LOGIN before STARTTLS is refused by the proxy.
		conn, err := dialFrom(imapAddr, "127.0.0.3", time.Now().Add(30*time.Second))
		require.NoError(t, err)
		defer conn.Close()
		r := bufio.NewReader(conn)
		greeting, _ := r.ReadString('\n')
		require.Contains(t, greeting, "LOGINDISABLED")
		fmt.Fprintf(conn, "a LOGIN alice@example.test \"%s\"\r\n", proxyPassword)
		line, _ := r.ReadString('\n')
		require.True(t, strings.HasPrefix(line, "a NO [PRIVACYREQUIRED]"), line)
		// A wrong password is refused without reaching a back-end.
		conn2, err := dialFrom(imapAddr, "127.0.0.3", time.Time{})
		require.NoError(t, err)
		c2, err := imapclient.NewStartTLS(conn2, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		require.NoError(t, err)
		defer c2.Close()
		err = c2.Login("alice@example.test", "wrong").Wait()
		require.ErrorContains(t, err, "AUTHENTICATIONFAILED")
		// store1's plaintext listener takes no password from a direct client, nor the
		// master credential.
		conn3, err := dialFrom(stores["store1"].addrs["imap"], "127.0.0.2", time.Now().Add(30*time.Second))
		require.NoError(t, err)
		defer conn3.Close()
		r3 := bufio.NewReader(conn3)
		r3.ReadString('\n')
		fmt.Fprintf(conn3, "a LOGIN alice@example.test \"%s\"\r\n", proxyPassword)
		line, _ = r3.ReadString('\n')
		require.True(t, strings.HasPrefix(line, "a NO [PRIVACYREQUIRED]"), line)
		c4 := imapTLSFrom(t, stores["store1"].addrs["imaps"], "127.0.0.2", "alice@example.test")
		c4.Close()
		conn5, err := dialFrom(stores["store1"].addrs["imaps"], "127.0.0.2", time.Now().Add(30*time.Second))
		require.NoError(t, err)
		tc5 := tls.Client(conn5, &tls.Config{InsecureSkipVerify: true})
		defer tc5.Close()
		r5 := bufio.NewReader(tc5)
		r5.ReadString('\n')
		masterResp := base64.StdEncoding.EncodeToString([]byte("alice@example.test\x00proxy\x00e2e-master-secret-0123456789abcdef0123"))
		fmt.Fprintf(tc5, "a AUTHENTICATE PLAIN %s\r\n", masterResp)
		line, _ = r5.ReadString('\n')
		require.True(t, strings.HasPrefix(line, "a NO"), "a direct client's master login: %q", line)
	})

	t.Run("pop3", func(t *testing.T) {
		for user, host := range proxyUsers {
			p := pop3Dial(t, pop3Addr)
			p.cmd("USER "+user, "+OK")
			p.cmd("PASS "+proxyPassword, "+OK")
			p.cmd("STAT", "+OK 1 ")
			p.cmd("RETR 1", "+OK")
			body := p.multiline()
			require.Contains(t, body, "Subject: "+user+" on "+host)
			p.cmd("QUIT", "+OK")
			requireEventually(t, func() bool {
				return logHas(logs[host].logText(), `msg="pop3 login"`, "user="+user, "remote=127.0.0.3")
			})
		}
	})

	t.Run("managesieve", func(t *testing.T) {
		bin := testenv.Program(t, "sieve-connect")
		host, port, _ := strings.Cut(px.addrs["proxy-managesieve"], ":")
		local := filepath.Join(t.TempDir(), "s.sieve")
		require.NoError(t, os.WriteFile(local, []byte("require \"fileinto\";\nfileinto \"Archive\";\n"), 0o644))
		for _, user := range []string{"alice@example.test", "carol@example.test"} {
			sc := func(args ...string) string {
				pr, pw, err := os.Pipe()
				require.NoError(t, err)
				pw.WriteString(proxyPassword + "\n")
				pw.Close()
				defer pr.Close()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append([]string{"--server", host, "--port", port, "--user", user,
					"--passwordfd", "3", "--notlsverify", "--authmech", "PLAIN"}, args...)...)
				cmd.ExtraFiles = []*os.File{pr}
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "sieve-connect %v:\n%s", args, out)
				return string(out)
			}
			sc("--upload", "--localsieve", local, "--remotesieve", "archive")
			require.Contains(t, sc("--list"), "archive")
			requireEventually(t, func() bool {
				return logHas(logs[proxyUsers[user]].logText(), `msg="managesieve login"`, "user="+user)
			})
		}
	})

	lc, err := lmtp.New(lmtp.Config{LocalName: "mx.example.test"})
	require.NoError(t, err)
	defer lc.Close()
	deliver := func(rcpts ...string) []lmtp.RcptResult {
		msg := strings.NewReader("From: x@example.net\r\nSubject: by lmtp\r\n\r\nhello\r\n")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, _ := lc.Deliver(ctx, px.addrs["proxy-lmtp"], "x@example.net", rcpts, msg, msg.Size())
		return res
	}
	t.Run("lmtp", func(t *testing.T) {
		// bob's back-end takes LMTP; alice's has no LMTP back-end configured: 451.
		res := deliver("bob@example.test", "nobody@example.test", "alice@example.test")
		require.Equal(t, lmtp.Delivered, res[0].Status, res[0].Reply)
		require.Equal(t, 550, res[1].Code, res[1].Reply)
		require.Equal(t, 451, res[2].Code, res[2].Reply)
		c, err := proxyIMAP(t, "bob@example.test")
		require.NoError(t, err)
		require.Equal(t, []string{"bob@example.test on store2", "by lmtp"}, inboxSubjects(t, c))
	})

	t.Run("store-down", func(t *testing.T) {
		stores["store2"].kill()
		// The health check sees it (every 200ms) before any login tries it.
		requireEventually(t, func() bool { return logHas(px.logText(), "back-end down", "backend=store2") })
		_, err := proxyIMAP(t, "bob@example.test")
		require.ErrorContains(t, err, "UNAVAILABLE")
		p := pop3Dial(t, pop3Addr)
		p.cmd("AUTH PLAIN "+plainB64("bob@example.test", proxyPassword), "-ERR [SYS/TEMP]")
		// alice, on the other back-end, is unaffected.
		c, err := proxyIMAP(t, "alice@example.test")
		require.NoError(t, err)
		require.Equal(t, []string{"alice@example.test on store1"}, inboxSubjects(t, c))
		p = pop3Dial(t, pop3Addr)
		p.cmd("AUTH PLAIN "+plainB64("alice@example.test", proxyPassword), "+OK")
		p.cmd("STAT", "+OK 1 ")
		require.Contains(t, px.logText(), "back-end down (health check)")
		res := deliver("bob@example.test")
		require.Equal(t, "4.3.0", res[0].Enhanced, res[0].Reply)
		require.Equal(t, lmtp.Temporary, res[0].Status)
	})
}

// logHas says whether a line of log holds every one of parts.
func logHas(log string, parts ...string) bool {
	for line := range strings.Lines(log) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func plainB64(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// pop3Client is a line-level POP3 client over implicit TLS from 127.0.0.3.
type pop3Client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func pop3Dial(t *testing.T, addr string) *pop3Client {
	t.Helper()
	conn, err := dialFrom(addr, "127.0.0.3", time.Now().Add(time.Minute))
	require.NoError(t, err)
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	t.Cleanup(func() { tc.Close() })
	p := &pop3Client{t: t, c: tc, r: bufio.NewReader(tc)}
	line, err := p.r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "+OK"), line)
	return p
}

func (p *pop3Client) cmd(line, wantPrefix string) {
	p.t.Helper()
	_, err := fmt.Fprintf(p.c, "%s\r\n", line)
	require.NoError(p.t, err)
	ans, err := p.r.ReadString('\n')
	require.NoError(p.t, err, "after %q", line)
	require.True(p.t, strings.HasPrefix(ans, wantPrefix), "%q answered %q, want %q", line, ans, wantPrefix)
}

func (p *pop3Client) multiline() string {
	p.t.Helper()
	var b strings.Builder
	for {
		l, err := p.r.ReadString('\n')
		require.NoError(p.t, err)
		if l == ".\r\n" {
			return b.String()
		}
		b.WriteString(l)
	}
}
