package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// The users of the proxy test, each on both back-ends (so that a session sent to the
// wrong back-end would log in and show the wrong mailbox, and the test would see it),
// but living, per the directory, on one.
var proxyUsers = map[string]string{ // address -> mail host
	"alice@example.test": "store1",
	"bob@example.test":   "store2",
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
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: %s.example.test
data_dir: %s
local_domains: [example.test]
trusted_networks: [192.0.2.0/24]
postmaster: postmaster@example.test
http: { addr: "" }
managesieve: { addr: "" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
%s`, name, data, dns.Addr(), section)), 0o644))
	return startServer(t, cfg, append([]string{"mx"}, want...)...)
}

// startStore starts a back-end whose imaps and pop3s listeners take PROXY headers from
// 127.0.0.1 (the proxy) and serve other loopback addresses directly.
func startStore(t *testing.T, name string, dns *dnstest.Server) *server {
	t.Helper()
	return startNode(t, name, dns, true, `imap: { addr: "", tls_addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
pop3: { addr: "", tls_addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
`, "imaps", "pop3s")
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
	msgs, err := c.Fetch(imap.SeqSetNum(1, sel.NumMessages), &imap.FetchOptions{Envelope: true}).Collect()
	require.NoError(t, err)
	var out []string
	for _, m := range msgs {
		out = append(out, m.Envelope.Subject)
	}
	return out
}

// TestProxyTwoStores runs two back-end processes and the IMAP/POP3 proxy (a third) with the directory in PostgreSQL: each user, through the proxy, reaches the
// mailbox on their own back-end; the back-end logs the real client address (PROXY v2);
// a back-end killed gives its users a temporary error and leaves the other's alone.
func TestProxyTwoStores(t *testing.T) {
	pg := pgtest.Start(t)
	dns := dnstest.New(t, dnstest.Zone{})
	stores := map[string]*server{"store1": startStore(t, "store1", dns), "store2": startStore(t, "store2", dns)}

	// One message per user, appended directly (from 127.0.0.2, not a trusted proxy) on
	// the back-end that holds the user, saying where it is.
	for user, host := range proxyUsers {
		c := imapTLSFrom(t, stores[host].addrs["imaps"], "127.0.0.2", user)
		msg := fmt.Sprintf("From: x@example.test\r\nTo: %s\r\nSubject: %s on %s\r\n\r\nbody\r\n", user, user, host)
		cmd := c.Append("INBOX", int64(len(msg)), nil)
		_, err := cmd.Write([]byte(msg))
		require.NoError(t, err)
		require.NoError(t, cmd.Close())
		_, err = cmd.Wait()
		require.NoError(t, err)
		require.NoError(t, c.Logout().Wait())
	}

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
	// The proxy: a third process, with the directory (mail hosts and password hashes) in
	// PostgreSQL and no users of its own.
	section := fmt.Sprintf(`imap: { addr: "" }
pop3: { addr: "" }
directory: { postgres: "%s" }
proxy:
  imap_addr: "127.0.0.1:0"
  pop3s_addr: "127.0.0.1:0"
  backends:
`, dsn)
	for name, s := range stores {
		section += fmt.Sprintf("    %s: { imap: %q, pop3: %q, tls: true, insecure_skip_verify: true }\n", name, s.addrs["imaps"], s.addrs["pop3s"])
	}
	px := startNode(t, "proxy", dns, false, section, "proxy-imap", "proxy-pop3s")
	imapAddr, pop3Addr := px.addrs["proxy-imap"], px.addrs["proxy-pop3s"]

	proxyIMAP := func(t *testing.T, user string) (*imapclient.Client, error) {
		conn, err := dialFrom(imapAddr, "127.0.0.3", time.Time{})
		require.NoError(t, err)
		c, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c, c.Login(user, proxyPassword).Wait()
	}

	t.Run("imap", func(t *testing.T) {
		for user, host := range proxyUsers {
			c, err := proxyIMAP(t, user)
			require.NoError(t, err)
			require.Equal(t, []string{user + " on " + host}, inboxSubjects(t, c), "%s reached the wrong mailbox", user)
			require.NoError(t, c.Logout().Wait())
			// The back-end saw the client (127.0.0.3), not the proxy (127.0.0.1).
			requireEventually(t, func() bool {
				return logHas(stores[host].logText(), `msg="imap login"`, "user="+user, "remote=127.0.0.3")
			})
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
		c, err := proxyIMAP(t, "alice@example.test")
		require.NoError(t, err)
		c.Close()
		conn2, err := dialFrom(imapAddr, "127.0.0.3", time.Time{})
		require.NoError(t, err)
		c2, err := imapclient.NewStartTLS(conn2, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		require.NoError(t, err)
		defer c2.Close()
		err = c2.Login("alice@example.test", "wrong").Wait()
		require.ErrorContains(t, err, "AUTHENTICATIONFAILED")
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
				return logHas(stores[host].logText(), `msg="pop3 login"`, "user="+user, "remote=127.0.0.3")
			})
		}
	})

	t.Run("store-down", func(t *testing.T) {
		stores["store2"].kill()
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
		require.Contains(t, px.logText(), "back-end unavailable")
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
