package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/redistest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// The users of the front-end tests and their mail hosts. Every back-end has every user
// in its own user database, so that mail or a move sent to the wrong back-end would be
// accepted there and the test would see it in the wrong mailbox.
var clusterUsers = map[string]string{
	"alice@example.test": "store1",
	"bob@example.test":   "store2",
	"carol@example.test": "store1",
}

// backend is a back-end process: its fixed addresses (it is restarted on them) and its
// config file.
type backend struct {
	name, cfg, lmtp, imaps, pop3s, sieve string
	srv                                  *server
}

// newBackend gives a back-end its fixed loopback addresses (it is restarted on them)
// and its users (every cluster user, in its own database); startBackend writes its
// config, which names every back-end (directory.hosts), and starts it.
func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o700))
	db, err := auth.OpenDB(auth.DefaultDBPath(filepath.Join(dir, "data")))
	require.NoError(t, err)
	for u := range clusterUsers {
		require.NoError(t, db.Add(context.Background(), u, proxyPassword))
	}
	require.NoError(t, db.Close())
	return &backend{name: name, cfg: filepath.Join(dir, "portcullis.yaml"),
		lmtp: testenv.FreeAddr(t), imaps: testenv.FreeAddr(t), pop3s: testenv.FreeAddr(t), sieve: testenv.FreeAddr(t)}
}

// startBackends starts the back-ends named, each with mode: backend and this_host its
// name, the shared directory dsn, LMTP, IMAPS, POP3S and ManageSieve on their fixed
// ports, and the front-end (127.0.0.1) trusted for LMTP.
func startBackends(t *testing.T, dsn string, dns *dnstest.Server, names ...string) []*backend {
	t.Helper()
	return startBackendsWith(t, dsn, dns, "", names...)
}

// startBackendsWith is startBackends; with masterSecret (a file) the back-ends also take
// the proxy's master login (master_user proxy), from 127.0.0.1 with a PROXY header only
// (imap and pop3 proxy_from; ManageSieve follows imap): the test's own clients then
// connect from 127.0.0.2 or .3.
func startBackendsWith(t *testing.T, dsn string, dns *dnstest.Server, masterSecret string, names ...string) []*backend {
	t.Helper()
	return startBackendsFrom(t, dsn, dns, masterSecret, "proxy_from: [127.0.0.1/32]", names...)
}

// startBackendsFrom is startBackendsWith with from (the imap and pop3 keys proxy_from
// and move_from, in YAML) instead of proxy_from: [127.0.0.1/32].
func startBackendsFrom(t *testing.T, dsn string, dns *dnstest.Server, masterSecret, from string, names ...string) []*backend {
	t.Helper()
	proxied, master := "", ""
	if masterSecret != "" {
		proxied = ", proxy_protocol: true, " + from
		master = fmt.Sprintf("proxy: { master_user: proxy, master_secret_file: %q }\n", masterSecret)
	}
	var bs []*backend
	for _, n := range names {
		bs = append(bs, newBackend(t, n))
	}
	for _, b := range bs {
		require.NoError(t, os.WriteFile(b.cfg, []byte(fmt.Sprintf(`hostname: %s.example.test
mode: backend
data_dir: %s
local_domains: [example.test]
trusted_networks: [127.0.0.1/32]
postmaster: postmaster@example.test
http: { addr: "" }
managesieve: { addr: %q }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: lmtp, addr: %q, mode: lmtp }
imap: { addr: "", tls_addr: %q%s }
pop3: { addr: "", tls_addr: %q%s }
%sdirectory:
  postgres: %q
  this_host: %s
  cache_ttl: 500ms
%s`, b.name, filepath.Join(filepath.Dir(b.cfg), "data"), b.sieve, dns.Addr(), b.lmtp, b.imaps, proxied, b.pop3s, proxied,
			master, dsn, b.name, hostsYAML(bs...))), 0o644))
		b.start(t)
	}
	return bs
}

func (b *backend) start(t *testing.T) {
	b.srv = startServer(t, b.cfg, "lmtp", "imaps", "pop3s", "managesieve")
}

// hostsYAML is the directory.hosts table of the back-ends.
func hostsYAML(backends ...*backend) string {
	s := "  hosts:\n"
	for _, b := range backends {
		s += fmt.Sprintf("    %s: { lmtp: %q, imap: %q, pop3: %q, managesieve: %q }\n", b.name, b.lmtp, b.imaps, b.pop3s, b.sieve)
	}
	return s
}

// startFrontend starts a front-end process over the directory dsn and the back-ends,
// its rate limits counted in Redis, its queue retrying every second or two.
func startFrontend(t *testing.T, dsn, redisAddr string, dns *dnstest.Server, backends ...*backend) *server {
	t.Helper()
	return startFrontendWith(t, dsn, redisAddr, dns, "", backends...)
}

// startFrontendWith is startFrontend with extra appended to its portcullis.yaml.
func startFrontendWith(t *testing.T, dsn, redisAddr string, dns *dnstest.Server, extra string, backends ...*backend) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: fe1.example.test
mode: frontend
data_dir: %s
local_domains: [example.test]
trusted_networks: [192.0.2.0/24]
postmaster: postmaster@example.test
http: { addr: "" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
delivery: { min_backoff: 1s, max_backoff: 2s }
rate_limits: { client_message_rate_limit: 1000, redis: { addr: %q } }
directory:
  postgres: %q
  cache_ttl: 500ms
%s%s`, filepath.Join(dir, "data"), dns.Addr(), redisAddr, dsn, hostsYAML(backends...), extra)), 0o644))
	return startServer(t, cfg, "mx")
}

// putClusterUsers puts the users in the shared directory with their mail hosts.
func putClusterUsers(t *testing.T, dsn string) *directory.Postgres {
	t.Helper()
	ctx := context.Background()
	dir, err := directory.OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { dir.Close() })
	hash, err := auth.HashPassword(proxyPassword, auth.DefaultArgon2Params)
	require.NoError(t, err)
	for u, host := range clusterUsers {
		require.NoError(t, dir.Put(ctx, directory.User{Address: u, MailHost: host, PasswordHash: hash}))
	}
	return dir
}

// sendVia sends one message with subject to rcpt through the MX at addr, as a client
// from 127.0.0.2; it returns the failing stage and error.
func sendVia(t *testing.T, addr, rcpt, subject string) (string, error) {
	t.Helper()
	c := e2eDial(t, addr, "127.0.0.2", "client.example.net")
	defer c.Close()
	msg := fmt.Sprintf("From: sender@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\nbody\r\n",
		rcpt, subject, strings.ReplaceAll(subject, " ", "."))
	return e2eSend(c, "sender@example.net", rcpt, msg)
}

// subjectsOn lists user's INBOX subjects on a back-end, read over IMAPS from 127.0.0.2.
func subjectsOn(t *testing.T, b *backend, user string) []string {
	t.Helper()
	c := imapTLSFrom(t, b.imaps, "127.0.0.2", user)
	defer c.Close()
	return inboxSubjects(t, c)
}

// filesOn counts the message files of user's mailbox on b, read from its maildirs on
// disk. Asking a back-end over IMAP about a user who lives elsewhere races with its
// tenancy watch, which closes such a session (BYE [UNAVAILABLE]) within a second: an
// absence is checked here instead.
func filesOn(t *testing.T, b *backend, user string) int {
	t.Helper()
	local, domain, _ := strings.Cut(user, "@")
	root := filepath.Join(filepath.Dir(b.cfg), "data", "mail", domain, local)
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if dir := filepath.Base(filepath.Dir(path)); !d.IsDir() && (dir == "cur" || dir == "new") {
			n++
		}
		return nil
	})
	require.NoError(t, err)
	return n
}

// TestFrontendTwoStores: a front-end process delivers each recipient by LMTP to the
// back-end process the PostgreSQL directory names; an unknown recipient is refused at
// RCPT; mail for a user being moved waits in the front-end's queue until the move
// ends; mail for a SIGKILLed back-end waits there too and arrives when it is back.
func TestFrontendTwoStores(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	redisAddr := redistest.Start(t)
	dns := dnstest.New(t, dnstest.Zone{})
	dir := putClusterUsers(t, dsn)
	bs := startBackends(t, dsn, dns, "store1", "store2")
	s1, s2 := bs[0], bs[1]
	fe := startFrontend(t, dsn, redisAddr, dns, s1, s2)
	mx := fe.addrs["mx"]

	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		stage, err := sendVia(t, mx, u, "hello "+u)
		require.NoError(t, err, "%s at %s: %s", u, stage, smtpMessage(err))
	}
	requireEventually(t, func() bool { return len(subjectsOn(t, s2, "bob@example.test")) == 1 })
	requireEventually(t, func() bool { return len(subjectsOn(t, s1, "alice@example.test")) == 1 })
	require.Equal(t, []string{"hello alice@example.test"}, subjectsOn(t, s1, "alice@example.test"))
	require.Equal(t, []string{"hello bob@example.test"}, subjectsOn(t, s2, "bob@example.test"))
	require.Equal(t, 1, filesOn(t, s1, "alice@example.test"), "filesOn does not find alice's message")
	require.Zero(t, filesOn(t, s2, "alice@example.test"), "alice's mail reached the wrong back-end")
	require.Zero(t, filesOn(t, s1, "bob@example.test"), "bob's mail reached the wrong back-end")

	// A back-end takes by LMTP only the users that live on it: alice's mail sent to
	// store2 (a front-end with a stale cache) is deferred there, not stored.
	lc, err := lmtp.New(lmtp.Config{LocalName: "stale.example.test"})
	require.NoError(t, err)
	defer lc.Close()
	stale := "From: x@example.net\r\nSubject: stale route\r\n\r\nbody\r\n"
	res, err := lc.Deliver(context.Background(), s2.lmtp, "x@example.net", []string{"alice@example.test"}, strings.NewReader(stale), int64(len(stale)))
	require.NoError(t, err)
	require.Equal(t, lmtp.Temporary, res[0].Status, res[0].Reply)

	// The rate limits are counted in the shared Redis.
	rc := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rc.Close()
	keys, err := rc.Keys(context.Background(), "portcullis:rate:*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys, "no rate counter in Redis")

	// Unknown to the directory: refused at RCPT, nothing queued.
	stage, err := sendVia(t, mx, "nobody@example.test", "to nobody")
	require.Equal(t, "rcpt", stage)
	require.Contains(t, smtpMessage(err), "550 5.1.1")

	// A user being moved: accepted, held in the queue (4xx, never a bounce), delivered
	// once the mail host flips.
	ctx := context.Background()
	require.NoError(t, dir.SetState(ctx, "carol@example.test", directory.StateMoving))
	_, err = sendVia(t, mx, "carol@example.test", "held for carol")
	require.NoError(t, err)
	requireEventually(t, func() bool {
		return logHas(fe.logText(), "carol@example.test", "450 4.2.1")
	})
	require.Zero(t, filesOn(t, s1, "carol@example.test"))
	require.NoError(t, dir.SetMailHost(ctx, "carol@example.test", "store2"))
	requireEventually(t, func() bool { return slices.Equal(subjectsOn(t, s2, "carol@example.test"), []string{"held for carol"}) })
	require.Zero(t, filesOn(t, s1, "carol@example.test"))

	// A back-end killed: its users' mail waits in the front-end queue, the other's is
	// delivered meanwhile, and nothing bounces.
	s2.srv.kill()
	_, err = sendVia(t, mx, "bob@example.test", "while store2 was down")
	require.NoError(t, err)
	_, err = sendVia(t, mx, "alice@example.test", "alice meanwhile")
	require.NoError(t, err)
	requireEventually(t, func() bool { return len(subjectsOn(t, s1, "alice@example.test")) == 2 })
	requireEventually(t, func() bool {
		return logHas(fe.logText(), "bob@example.test", "451 4.4.1")
	})
	s2.start(t)
	requireEventually(t, func() bool { return len(subjectsOn(t, s2, "bob@example.test")) == 2 })
	require.Equal(t, []string{"hello bob@example.test", "while store2 was down"}, subjectsOn(t, s2, "bob@example.test"))
	require.NotContains(t, fe.logText(), "bounce", "a front-end bounced mail it should have kept")
}

// TestProxyMode: mode: proxy serves the proxy's listeners and nothing else: no SMTP
// listener (even the default ones), no IMAP or POP3 of its own.
func TestProxyMode(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: proxy.example.test
mode: proxy
data_dir: %s
http: { addr: "" }
log: { level: info }
proxy:
  imap_addr: "127.0.0.1:0"
  backends:
    store1: { imap: "127.0.0.1:1", pop3: "127.0.0.1:1" }
`, filepath.Join(dir, "data"))), 0o644))
	px := startServer(t, cfg, "proxy-imap")
	require.Len(t, px.addrs, 1, "a proxy listens on its proxy listeners only: %v", px.addrs)
	require.NotContains(t, px.logText(), "listener=mx")
	require.NotContains(t, px.logText(), "listener=imap ")
}

// TestProxyModeLMTPOnly: a proxy of the front-ends' LMTP alone (no IMAP or POP3
// listener) is a proxy too, not a configuration error.
func TestProxyModeLMTPOnly(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: proxy.example.test
mode: proxy
data_dir: %s
http: { addr: "" }
log: { level: info }
proxy:
  lmtp_addr: "127.0.0.1:0"
  health_interval: -1s
  backends:
    store1: { lmtp: "127.0.0.1:1" }
`, filepath.Join(dir, "data"))), 0o644))
	px := startServer(t, cfg, "proxy-lmtp")
	require.Len(t, px.addrs, 1, "%v", px.addrs)
}
