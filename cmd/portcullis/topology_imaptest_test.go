package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// TestImaptestProxy runs imaptest's scripted tests through a mode: proxy process (implicit
// TLS, the user's password checked against the PostgreSQL directory, the master login to
// a back-end over a plaintext link with PROXY v2 headers) and holds the result to the
// baseline TestImaptest holds a direct connection to: the proxy changes nothing a client
// sees after login.
func TestImaptestProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs imaptest's scripted tests through the proxy (about 10 s)")
	}
	dir := imaptestDir(t)
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	ctx := context.Background()
	dirdb, err := directory.OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	defer dirdb.Close()
	hash, err := auth.HashPassword(proxyPassword, auth.DefaultArgon2Params)
	require.NoError(t, err)
	const user = "imaptest@example.test"
	require.NoError(t, dirdb.Put(ctx, directory.User{Address: user, MailHost: "store1", PasswordHash: hash}))
	secret := filepath.Join(t.TempDir(), "master.secret")
	require.NoError(t, os.WriteFile(secret, []byte("imaptest-master-secret-0123456789abcdef\n"), 0o600))
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
imap: { addr: "127.0.0.1:0", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
pop3: { addr: "" }
managesieve: { addr: "" }
proxy: { master_user: proxy, master_secret_file: %q }
directory: { postgres: %q, this_host: store1 }
`, filepath.Join(bdir, "data"), dns.Addr(), secret, dsn)), 0o644))
	store := startPlainServer(t, bcfg, "imap")

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
  master_user: proxy
  master_secret_file: %q
  backends:
    store1: { imap: %q }
`, filepath.Join(pdir, "data"), dsn, secret, store.addrs["imap"])), 0o644))
	px := startPlainServer(t, pcfg, "proxy-imaps")
	host, port, err := net.SplitHostPort(px.addrs["proxy-imaps"])
	require.NoError(t, err)

	got := runImaptest(t, dir, "host="+host, "port="+port, "ssl=any-cert", "user="+user, "pass="+proxyPassword)
	b, err := os.ReadFile(imaptestBaseline)
	require.NoError(t, err)
	if diff := diffImaptest(string(b), got); diff != "" {
		t.Errorf("imaptest through the proxy differs from %s (a direct connection's):\n%s", imaptestBaseline, diff)
		for _, f := range got.fails {
			t.Logf("%s", tail(f.detail, 1500))
		}
	}
}
