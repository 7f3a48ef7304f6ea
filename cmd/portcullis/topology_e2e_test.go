package main

// Issue 21's topology through the real binary: 2 front-ends, 3 back-ends and 1 proxy as
// separate processes on loopback over one PostgreSQL and one Redis; then the faults
// (PostgreSQL restarted under a stream of deliveries, Redis gone) in the same topology.

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/redistest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// topoUsers spreads the users of clusterUsers (every back-end has each of them in its
// own user database, so a wrong route would be accepted and seen) over three back-ends.
var topoUsers = map[string]string{
	"alice@example.test": "store1",
	"bob@example.test":   "store2",
	"carol@example.test": "store3",
}

// topoBackend is a back-end of the topology: the backend of the front-end tests plus
// the plaintext IMAP, POP3 and ManageSieve listeners the proxy relays to (PROXY v2
// headers from 127.0.0.1, the master login).
type topoBackend struct {
	*backend
	imap, pop3, sieve string
}

// topology is the running processes.
type topology struct {
	pg        *pgtest.Server
	redis     *redistest.Server
	dsn       string
	backends  map[string]*topoBackend
	frontends []*server
	proxy     *server
}

// startTopology starts the back-ends (store1..3), the front-ends (one per entry that
// feExtra returns given Redis's address, appended to its config) and a mode: proxy
// process.
func startTopology(t *testing.T, feExtra func(redisAddr string) []string) *topology {
	t.Helper()
	pg := pgtest.StartServer(t)
	top := &topology{pg: pg, redis: redistest.StartServer(t), dsn: pgtest.NewDatabase(t, pg.DSN),
		backends: map[string]*topoBackend{}}
	dns := dnstest.New(t, dnstest.Zone{})
	ctx := context.Background()
	dir, err := directory.OpenPostgres(ctx, top.dsn)
	require.NoError(t, err)
	t.Cleanup(func() { dir.Close() })
	hash, err := auth.HashPassword(proxyPassword, auth.DefaultArgon2Params)
	require.NoError(t, err)
	for u, host := range topoUsers {
		require.NoError(t, dir.Put(ctx, directory.User{Address: u, MailHost: host, PasswordHash: hash}))
	}
	secret := filepath.Join(t.TempDir(), "master.secret")
	require.NoError(t, os.WriteFile(secret, []byte("topology-master-secret-0123456789abcdef\n"), 0o600))

	var bs []*backend
	for _, n := range []string{"store1", "store2", "store3"} {
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
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: lmtp, addr: %q, mode: lmtp }
imap: { addr: "127.0.0.1:0", tls_addr: %q, proxy_protocol: true, proxy_from: [127.0.0.1/32] }
pop3: { addr: "127.0.0.1:0", tls_addr: %q, proxy_protocol: true, proxy_from: [127.0.0.1/32] }
managesieve: { addr: "127.0.0.1:0" }
proxy: { master_user: proxy, master_secret_file: %q }
directory:
  postgres: %q
  this_host: %s
  cache_ttl: 500ms
`, b.name, filepath.Join(filepath.Dir(b.cfg), "data"), dns.Addr(), b.lmtp, b.imaps, b.pop3s, secret, top.dsn, b.name)), 0o644))
		b.srv = startServer(t, b.cfg, "lmtp", "imap", "imaps", "pop3", "pop3s", "managesieve")
		top.backends[b.name] = &topoBackend{backend: b, imap: b.srv.addrs["imap"], pop3: b.srv.addrs["pop3"], sieve: b.srv.addrs["managesieve"]}
	}
	for _, extra := range feExtra(top.redis.Addr) {
		top.frontends = append(top.frontends, startFrontendWith(t, top.dsn, top.redis.Addr, dns, extra, bs...))
	}

	pdir := t.TempDir()
	cfg := filepath.Join(pdir, "portcullis.yaml")
	backends := ""
	for _, b := range bs {
		tb := top.backends[b.name]
		backends += fmt.Sprintf("    %s: { imap: %q, pop3: %q, managesieve: %q }\n", b.name, tb.imap, tb.pop3, tb.sieve)
	}
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: proxy.example.test
mode: proxy
data_dir: %s
http: { addr: "" }
log: { level: info }
directory: { postgres: %q, cache_ttl: 500ms }
proxy:
  imap_addr: "127.0.0.1:0"
  pop3s_addr: "127.0.0.1:0"
  managesieve_addr: "127.0.0.1:0"
  master_user: proxy
  master_secret_file: %q
  health_interval: 500ms
  backends:
%s`, filepath.Join(pdir, "data"), top.dsn, secret, backends)), 0o644))
	top.proxy = startServer(t, cfg, "proxy-imap", "proxy-pop3s", "proxy-managesieve")
	return top
}

// proxyIMAP logs user in through the proxy (STARTTLS), from 127.0.0.3.
func (top *topology) proxyIMAP(t *testing.T, user string) *imapclient.Client {
	t.Helper()
	conn, err := dialFrom(top.proxy.addrs["proxy-imap"], "127.0.0.3", time.Time{})
	require.NoError(t, err)
	c, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.Login(user, proxyPassword).Wait())
	return c
}

// sendFrom sends one message with subject to rcpt through the MX at addr, as a client
// from the loopback address src.
func sendFrom(t *testing.T, addr, src, rcpt, subject string) (string, error) {
	t.Helper()
	c := e2eDial(t, addr, src, "client.example.net")
	defer c.Close()
	msg := fmt.Sprintf("From: sender@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\nbody\r\n",
		rcpt, subject, strings.ReplaceAll(subject, " ", "."))
	return e2eSend(c, "sender@example.net", rcpt, msg)
}

// sieveConnect runs sieve-connect as user against the ManageSieve server at addr.
func sieveConnect(t *testing.T, addr, user string, args ...string) string {
	t.Helper()
	bin := testenv.Program(t, "sieve-connect")
	host, port, _ := strings.Cut(addr, ":")
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

// topoGreylist greylists at RCPT in the shared Redis, 127.0.0.2 (the clients of
// sendVia) allow-listed, a store failure handled as onError says.
func topoGreylist(t *testing.T, redisAddr, onError string) string {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte(fmt.Sprintf(`policies:
  grey:
    greylist: { delay: 1h, store: redis, redis: { addr: %q }, allow_clients: [127.0.0.2], on_error: %s }
rules:
  - name: greylist
    if: grey.greylisted
    tempfail: "{{grey.reply}}"
`, redisAddr, onError)), 0o644))
	return fmt.Sprintf("rules: %s\n", rules)
}

// TestTopology: mail sent to either front-end lands on the user's back-end, and IMAP,
// POP3 and ManageSieve through the proxy reach that mailbox; PostgreSQL restarted under a
// stream of deliveries loses nothing accepted and duplicates nothing; with Redis gone,
// greylisting fails open or closed as each front-end is configured and SMTP goes on.
func TestTopology(t *testing.T) {
	top := startTopology(t, func(redisAddr string) []string {
		return []string{topoGreylist(t, redisAddr, "accept"), topoGreylist(t, redisAddr, "tempfail")}
	})
	fe := top.frontends

	// Two messages per user, one through each front-end.
	for u := range topoUsers {
		for i, f := range fe {
			stage, err := sendVia(t, f.addrs["mx"], u, fmt.Sprintf("%s via fe%d", u, i+1))
			require.NoError(t, err, "%s at %s: %s", u, stage, smtpMessage(err))
		}
	}
	for u, host := range topoUsers {
		want := []string{u + " via fe1", u + " via fe2"}
		requireEventually(t, func() bool { return len(subjectsOn(t, top.backends[host].backend, u)) == 2 })
		got := subjectsOn(t, top.backends[host].backend, u)
		slices.Sort(got)
		require.Equal(t, want, got)
		require.Equal(t, 2, filesOn(t, top.backends[host].backend, u), "filesOn does not find %s's messages", u)
		for name, b := range top.backends {
			if name != host {
				require.Zero(t, filesOn(t, b.backend, u), "%s's mail reached %s", u, name)
			}
		}
	}

	t.Run("proxy", func(t *testing.T) {
		script := filepath.Join(t.TempDir(), "s.sieve")
		require.NoError(t, os.WriteFile(script, []byte("require \"fileinto\";\nfileinto \"Archive\";\n"), 0o644))
		for u, host := range topoUsers {
			b := top.backends[host]
			c := top.proxyIMAP(t, u)
			got := inboxSubjects(t, c)
			slices.Sort(got)
			require.Equal(t, []string{u + " via fe1", u + " via fe2"}, got)
			require.NoError(t, c.Logout().Wait())
			requireEventually(t, func() bool {
				return logHas(b.srv.logText(), `msg="imap login"`, "user="+u, "remote=127.0.0.3")
			})

			p := pop3Dial(t, top.proxy.addrs["proxy-pop3s"])
			p.cmd("USER "+u, "+OK")
			p.cmd("PASS "+proxyPassword, "+OK")
			p.cmd("STAT", "+OK 2 ")
			p.cmd("QUIT", "+OK")
			requireEventually(t, func() bool {
				return logHas(b.srv.logText(), `msg="pop3 login"`, "user="+u, "remote=127.0.0.3")
			})

			// A script uploaded and listed through the proxy: the ManageSieve login is in
			// the user's back-end's log, and no other back-end saw the user's sessions.
			name := "topo" + strings.Split(u, "@")[0]
			sieveConnect(t, top.proxy.addrs["proxy-managesieve"], u, "--upload", "--localsieve", script, "--remotesieve", name)
			require.Contains(t, sieveConnect(t, top.proxy.addrs["proxy-managesieve"], u, "--list"), name)
			for other, ob := range top.backends {
				if other != host {
					require.False(t, logHas(ob.srv.logText(), "user="+u+" ", "remote=127.0.0.3"), "%s's session through the proxy reached %s", u, other)
				}
			}
			requireEventually(t, func() bool { return logHas(b.srv.logText(), `msg="managesieve login"`, "user="+u) })
		}
	})

	t.Run("postgres-restart", func(t *testing.T) {
		// A stream of messages, alternately to each front-end and user, while PostgreSQL
		// stops for 2 s and starts again. Every message answered 250 must be found once.
		users := slices.Sorted(func(yield func(string) bool) {
			for u := range topoUsers {
				if !yield(u) {
					return
				}
			}
		})
		accepted := map[string]string{} // subject -> user
		deferred := 0
		restarted := make(chan struct{})
		go func() {
			defer close(restarted)
			time.Sleep(time.Second)
			top.pg.Stop()
			time.Sleep(2 * time.Second)
			top.pg.Restart()
		}()
		deadline := time.Now().Add(90 * time.Second)
		after := 0 // messages sent since the restart
		for n := 0; after < 10 && time.Now().Before(deadline); n++ {
			select {
			case <-restarted:
				after++
			default:
			}
			u := users[n%len(users)]
			subject := fmt.Sprintf("stream %d", n)
			_, err := sendVia(t, fe[n%2].addrs["mx"], u, subject)
			switch code := smtpCode(err); {
			case err == nil:
				accepted[subject] = u
			case code >= 400 && code < 500:
				deferred++
			default:
				t.Fatalf("%s to %s: %v", subject, u, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		require.Equal(t, 10, after, "the restart did not finish")
		t.Logf("%d accepted, %d deferred at SMTP time", len(accepted), deferred)
		sawOutage := deferred > 0 || logHas(fe[0].logText()+fe[1].logText(), "4.4.3")
		require.True(t, sawOutage, "no front-end noticed PostgreSQL was down")

		want := map[string]int{}
		for _, u := range accepted {
			want[u]++
		}
		count := func(b *topoBackend, u string) map[string]int {
			m := map[string]int{}
			for _, s := range subjectsOn(t, b.backend, u) {
				if strings.HasPrefix(s, "stream ") {
					m[s]++
				}
			}
			return m
		}
		defer func() {
			if t.Failed() {
				for i, f := range fe {
					t.Logf("fe%d:\n%s", i+1, f.logText())
				}
				for n, b := range top.backends {
					t.Logf("%s:\n%s", n, b.srv.logText())
				}
			}
		}()
		for u, host := range topoUsers {
			requireEventually(t, func() bool {
				got := 0
				for _, k := range count(top.backends[host], u) {
					got += k
				}
				return got >= want[u]
			})
		}
		for u, host := range topoUsers {
			for name, b := range top.backends {
				if name != host {
					require.Zero(t, filesOn(t, b.backend, u), "%s's mail reached %s", u, name)
					continue
				}
				got := count(b, u)
				for s, k := range got {
					require.Equal(t, 1, k, "%s: %q stored %d times", u, s, k)
					require.Equal(t, u, accepted[s], "%q stored for %s but not accepted for them", s, u)
				}
				require.Len(t, got, want[u], "%s: accepted %d, stored %d", u, want[u], len(got))
			}
		}
	})

	t.Run("redis-down", func(t *testing.T) {
		// Redis up: an unknown client is greylisted, the triplet kept in Redis.
		for i, f := range fe {
			_, err := sendFrom(t, f.addrs["mx"], "127.0.0.4", "alice@example.test", fmt.Sprintf("grey %d", i))
			require.Equal(t, 451, smtpCode(err), smtpMessage(err))
			require.Contains(t, smtpMessage(err), "Greylisted")
		}
		rc := redis.NewClient(&redis.Options{Addr: top.redis.Addr})
		n, err := rc.DBSize(context.Background()).Result()
		rc.Close()
		require.NoError(t, err)
		require.Positive(t, n, "greylisting kept nothing in Redis")

		top.redis.Kill()
		// fe1 fails open (on_error: accept), fe2 closed (tempfail, 451 4.3.0).
		_, err = sendFrom(t, fe[0].addrs["mx"], "127.0.0.5", "bob@example.test", "grey open")
		require.NoError(t, err, smtpMessage(err))
		_, err = sendFrom(t, fe[1].addrs["mx"], "127.0.0.5", "bob@example.test", "grey closed")
		require.Equal(t, 451, smtpCode(err), smtpMessage(err))
		require.Contains(t, smtpMessage(err), "4.3.0")
		// The allow-listed client and the rate limits go on: mail flows through both.
		for i, f := range fe {
			_, err := sendVia(t, f.addrs["mx"], "carol@example.test", fmt.Sprintf("without redis %d", i+1))
			require.NoError(t, err, smtpMessage(err))
		}
		// The rate limits counted locally meanwhile (ratelimit says so once a minute).
		for _, f := range fe {
			requireEventually(t, func() bool {
				return logHas(f.logText(), "shared counters failed; counting locally") && logHas(f.logText(), "greylist: store failed")
			})
		}
		requireEventually(t, func() bool {
			got := subjectsOn(t, top.backends["store3"].backend, "carol@example.test")
			return slices.Contains(got, "without redis 1") && slices.Contains(got, "without redis 2")
		})
		requireEventually(t, func() bool {
			return slices.Contains(subjectsOn(t, top.backends["store2"].backend, "bob@example.test"), "grey open")
		})
	})
}
