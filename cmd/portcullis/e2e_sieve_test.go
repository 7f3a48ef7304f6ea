package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
)

// TestE2ESieve: Sieve at delivery through the real binary. Scripts are loaded with
// portcullis sieve beside the running server; mail arrives over LMTP (so a reject is
// refused in the transaction) and Sieve's replies and redirects go through the queue.
// A vacation script answers a sender once within :days and never a list; a redirect
// lands at the other address exactly once although the message arrives twice; fileinto
// :flags is visible over IMAP.
func TestE2ESieve(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "    - { name: lmtp, addr: \"127.0.0.1:0\", mode: lmtp }\n")
	require.NoError(t, appendFile(cfg, "postmaster: postmaster@example.test\n"))
	srv := startServer(t, cfg, "mx", "lmtp", "imap", "managesieve")
	defer srv.kill()
	requireEventually(t, func() bool { return passwordRe.MatchString(srv.logText()) })
	pm := passwordRe.FindStringSubmatch(srv.logText())

	for _, u := range []string{"alice@example.test", "carol@example.test", "dave@example.test"} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(strings.NewReader("pw-" + u + "\n"))
		root.SetArgs([]string{"user", "add", u, "--password-stdin", "--config", cfg})
		require.NoError(t, root.Execute(), out.String())
	}
	put := func(user, src string) {
		p := filepath.Join(dir, strings.Split(user, "@")[0]+".sieve")
		require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
		out, err := run(t, "sieve", "put", "--config", cfg, "--user", user, "main", p)
		require.NoError(t, err, out)
		out, err = run(t, "sieve", "activate", "--config", cfg, "--user", user, "main")
		require.NoError(t, err, out)
	}
	put("postmaster@example.test", `require ["vacation", "fileinto", "imap4flags", "mailbox", "reject"];
if header :contains "subject" "project" { fileinto :create :flags ["\\Flagged", "proj"] "Projects"; stop; }
if header :contains "subject" "unwanted" { reject "no thanks"; stop; }
vacation :days 7 :subject "Away" "I am away until Monday.";
`)
	put("alice@example.test", `redirect "postmaster@example.test";`)

	cl, err := lmtp.New(lmtp.Config{LocalName: "front.example.test"})
	require.NoError(t, err)
	defer cl.Close()
	deliver := func(from, rcpt, msg string) lmtp.RcptResult {
		t.Helper()
		res, err := cl.Deliver(context.Background(), "lmtp:"+srv.addrs["lmtp"], from, []string{rcpt}, strings.NewReader(msg), int64(len(msg)))
		require.NoError(t, err)
		require.Len(t, res, 1)
		return res[0]
	}
	msg := func(from, subject, id, extra string) string {
		return "From: " + from + "\r\nTo: postmaster@example.test\r\nSubject: " + subject + "\r\nMessage-ID: <" + id + "@example.test>\r\n" + extra + "\r\nHello.\r\n"
	}
	// Vacation: two messages from carol, one reply; a list message from dave, none.
	require.Equal(t, lmtp.Delivered, deliver("carol@example.test", "postmaster@example.test", msg("carol@example.test", "one", "c1", "")).Status)
	require.Equal(t, lmtp.Delivered, deliver("carol@example.test", "postmaster@example.test", msg("carol@example.test", "two", "c2", "")).Status)
	require.Equal(t, lmtp.Delivered, deliver("dave@example.test", "postmaster@example.test", msg("dave@example.test", "news", "d1", "List-Id: <news.example.test>\r\n")).Status)
	// reject: refused in the LMTP transaction.
	res := deliver("carol@example.test", "postmaster@example.test", msg("carol@example.test", "unwanted", "c3", ""))
	require.Equal(t, lmtp.Permanent, res.Status, res.Reply)
	require.Contains(t, res.Reply, "550 5.7.1")
	require.Contains(t, res.Reply, "no thanks")
	// Redirect: the same message twice to alice, forwarded once. It is addressed to
	// alice, so postmaster's vacation does not answer it (RFC 5230 §4.5).
	fwd := strings.Replace(msg("dave@example.test", "for alice", "a1", ""), "To: postmaster@", "To: alice@", 1)
	require.Equal(t, lmtp.Delivered, deliver("dave@example.test", "alice@example.test", fwd).Status)
	require.Equal(t, lmtp.Delivered, deliver("dave@example.test", "alice@example.test", fwd).Status)
	// fileinto with flags.
	require.Equal(t, lmtp.Delivered, deliver("carol@example.test", "postmaster@example.test", msg("carol@example.test", "project x", "c4", "")).Status)

	maildir := func(user string) []string {
		files, _ := filepath.Glob(filepath.Join(dir, "data/mail/example.test", user, "Maildir/new/*"))
		var out []string
		for _, f := range files {
			b, _ := os.ReadFile(f)
			out = append(out, string(b))
		}
		return out
	}
	// carol gets exactly one auto-reply; the queue delivers it.
	requireEventually(t, func() bool { return len(maildir("carol")) >= 1 })
	reply := maildir("carol")[0]
	require.Contains(t, reply, "Return-Path: <>")
	require.Contains(t, reply, "Auto-Submitted: auto-replied")
	require.Contains(t, reply, "In-Reply-To: <c1@example.test>")
	require.Contains(t, reply, "I am away until Monday.")
	// The redirect arrives in postmaster's INBOX once (the queue delivers it).
	redirected := func() int {
		n := 0
		for _, m := range maildir("postmaster") {
			if strings.Contains(m, "X-Sieve-Redirected-From: alice@example.test") {
				n++
			}
		}
		return n
	}
	requireEventually(t, func() bool { return redirected() >= 1 })
	requireEventually(t, func() bool {
		out, err := run(t, "queue", "list", "--config", cfg)
		return err == nil && strings.Contains(out, "-- 0 message(s)")
	})
	require.Equal(t, 1, redirected(), "the second arrival of the same message is not redirected again")
	require.Len(t, maildir("carol"), 1, "one vacation reply within :days")
	require.Empty(t, maildir("dave"), "no vacation reply to a list message")
	require.Empty(t, maildir("alice"), "redirect without :copy keeps no copy")
	log := srv.logText()
	require.Contains(t, log, "duplicate redirect suppressed")
	require.Equal(t, 1, strings.Count(log, "msg=\"sieve: vacation reply\""), log)

	// fileinto :create :flags, seen over IMAP.
	ic, err := imapclient.DialStartTLS(srv.addrs["imap"], &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	require.NoError(t, err)
	defer ic.Close()
	require.NoError(t, ic.Login(pm[1], pm[2]).Wait())
	sel, err := ic.Select("Projects", nil).Wait()
	require.NoError(t, err)
	require.EqualValues(t, 1, sel.NumMessages)
	fetched, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	require.NoError(t, err)
	require.Equal(t, "project x", fetched[0].Envelope.Subject)
	require.True(t, slices.Contains(fetched[0].Flags, imap.FlagFlagged), "%v", fetched[0].Flags)
	require.True(t, slices.Contains(fetched[0].Flags, imap.Flag("proj")), "%v", fetched[0].Flags)

	// The ManageSieve listener shows what the CLI stored, after STARTTLS, with the
	// password the user service checks.
	conn, err := net.DialTimeout("tcp", srv.addrs["managesieve"], 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	response := func() []string {
		var lines []string
		for {
			l, err := r.ReadString('\n')
			require.NoError(t, err, "after %q", lines)
			l = strings.TrimRight(l, "\r\n")
			lines = append(lines, l)
			if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
				return lines
			}
		}
	}
	require.Contains(t, response(), `"STARTTLS"`)
	fmt.Fprint(conn, "STARTTLS\r\n")
	require.Equal(t, "OK", response()[0])
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	r = bufio.NewReader(tc)
	conn = tc
	require.Contains(t, response(), `"SASL" "PLAIN"`)
	fmt.Fprintf(conn, "AUTHENTICATE \"PLAIN\" \"%s\"\r\n", base64.StdEncoding.EncodeToString([]byte("\x00"+pm[1]+"\x00"+pm[2])))
	require.Equal(t, []string{"OK"}, response())
	fmt.Fprint(conn, "LISTSCRIPTS\r\n")
	require.Equal(t, []string{`"main" ACTIVE`, "OK"}, response())
}
