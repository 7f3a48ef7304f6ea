package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/proxylisten"
)

// dialWithHeader connects from src to addr and sends a PROXY v2 header naming client,
// with the TLS flag (PP2_TYPE_SSL) when ssl.
func dialWithHeader(t *testing.T, addr, src, client string, ssl bool) net.Conn {
	t.Helper()
	conn, err := dialFrom(addr, src, time.Now().Add(time.Minute))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client)), conn.RemoteAddr())
	if ssl {
		require.NoError(t, h.SetTLVs([]proxyproto.TLV{proxylisten.SSLTLV()}))
	}
	_, err = h.WriteTo(conn)
	require.NoError(t, err)
	return conn
}

// sieveAuthPlaintext sends a PROXY header (claiming TLS) from src to a ManageSieve
// listener, then a password login over the plaintext connection, without STARTTLS; it
// returns the login's status line.
func sieveAuthPlaintext(t *testing.T, addr, src, user string) string {
	t.Helper()
	conn := dialWithHeader(t, addr, src, "203.0.113.7:40000", true)
	s := &sieveSession{t: t, conn: conn, r: bufio.NewReader(conn)}
	require.True(t, strings.HasPrefix(s.response(), "OK"))
	return s.cmd(`AUTHENTICATE "PLAIN" "` + plainB64(user, proxyPassword) + `"`)
}

// TestUserMoveFrom: back-ends that list each other only in move_from (the proxy, here
// 127.0.0.9, alone in proxy_from). A move with the master login from 127.0.0.1 (in
// move_from) works; a connection from there whose PROXY header claims TLS cannot log in
// with a password over plaintext, where one from the proxy can; and the client address
// its header names is only logged: the login is logged from the mover's own address.
func TestUserMoveFrom(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	dns := dnstest.New(t, dnstest.Zone{})
	putClusterUsers(t, dsn)
	secret := filepath.Join(t.TempDir(), "master.secret")
	require.NoError(t, os.WriteFile(secret, []byte("move-master-secret-0123456789abcdef\n"), 0o600))
	bs := startBackendsFrom(t, dsn, dns, secret, "proxy_from: [127.0.0.9/32], move_from: [127.0.0.1/32]", "store1", "store2")
	s1, s2 := bs[0], bs[1]
	defer func() {
		if t.Failed() {
			t.Log(s1.srv.logText())
			t.Log(s2.srv.logText())
		}
	}()
	const alice, carol = "alice@example.test", "carol@example.test"

	// The move, with the master login, from a back-end in move_from only.
	c := imapTLSFrom(t, s1.imaps, "127.0.0.2", alice)
	for i := range 3 {
		msg := fmt.Sprintf("From: sender@example.net\r\nTo: %s\r\nSubject: before %d\r\n\r\nbody\r\n", alice, i)
		cmd := c.Append("INBOX", int64(len(msg)), nil)
		_, err := cmd.Write([]byte(msg))
		require.NoError(t, err)
		require.NoError(t, cmd.Close())
		_, err = cmd.Wait()
		require.NoError(t, err)
	}
	require.NoError(t, c.Logout().Wait())
	out, err := runIn(t, "", "user", "--config", s2.cfg, "move", alice, "--to", "store2",
		"--master", "proxy", "--password-file", secret, "--insecure-skip-verify")
	require.NoError(t, err, out)
	require.Contains(t, out, "alice@example.test now lives on store2 (3 messages in ")
	c2 := imapTLSFrom(t, s2.imaps, "127.0.0.2", alice)
	require.Equal(t, []string{"before 0", "before 1", "before 2"}, folderSubjects(t, c2, "INBOX"))

	// A PROXY header claiming TLS: believed from the proxy, never from a mover.
	require.True(t, strings.HasPrefix(sieveAuthPlaintext(t, s1.sieve, "127.0.0.9", carol), "OK"),
		"the proxy's TLS claim must be believed (else this test proves nothing)")
	require.True(t, strings.HasPrefix(sieveAuthPlaintext(t, s1.sieve, "127.0.0.1", carol), "NO"),
		"a password over plaintext from a move_from peer claiming TLS was taken")

	// The client address a mover's header names is not the session's: the login is
	// logged (and throttled, limited) as the mover's own address.
	conn := dialWithHeader(t, s1.imaps, "127.0.0.1", "203.0.113.8:40000", false)
	ic := imapclient.New(tls.Client(conn, &tls.Config{InsecureSkipVerify: true}), nil)
	defer ic.Close()
	require.NoError(t, ic.Login(carol, proxyPassword).Wait())
	require.NoError(t, ic.Logout().Wait())
	// Both lines were logged before the replies above, but reach the log buffer through a
	// pipe: wait for both.
	requireEventually(t, func() bool {
		text := s1.srv.logText()
		return logHas(text, "connection from a back-end in move_from", "claimed=203.0.113.8:40000") &&
			logHas(text, "imap login", "user="+carol, "remote=127.0.0.1")
	})
	require.NotContains(t, s1.srv.logText(), "remote=203.0.113.8", "a mover's claimed client was believed")
}
