package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// run runs the CLI in-process and returns its output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("rules:\n  - name: big\n    if: msg.size > 1000000\n    reject: 552 5.3.4 \"too big\"\n"), 0o644))
	out, err := run(t, "rules", "check", good, "--data", dir)
	require.NoError(t, err, out)
	require.Contains(t, out, "1 rules")

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`policies:
  x: { kind: nosuch }
rules:
  - name: one
    if: msg.sise > 10
    reject: true
  - name: two
    stage: connect
    if: sender.null
    reject: true
`), 0o644))
	out, err = run(t, "rules", "check", bad, "--data", dir)
	require.Error(t, err)
	require.Contains(t, err.Error(), "3 error(s)")
	require.Contains(t, out, `bad.yaml:2:6: policy "x": unknown kind "nosuch"`)
	require.Contains(t, out, `bad.yaml:5:13: rule "one": if: msg has no field sise`)
	require.Contains(t, out, `rule "two": stage connect is too early: sender is known from the mail stage on`)

	// The default rule file checks clean.
	def := filepath.Join(dir, "default.yaml")
	require.NoError(t, os.WriteFile(def, mustDefaultRules(), 0o644))
	out, err = run(t, "rules", "check", def, "--data", dir)
	require.NoError(t, err, out)
}

func TestRulesTest(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte(`rules:
  - name: listed-net
    if: in_cidr(client.ip, "192.0.2.0/24")
    score: 4
  - name: subject
    if: header("Subject") matches "(?i)free money"
    reject: 554 5.7.1 "no thanks"
`), 0o644))
	msg := filepath.Join(dir, "m.eml")
	require.NoError(t, os.WriteFile(msg, []byte("From: x@example.net\nSubject: FREE money now\n\nhello\n"), 0o644))
	out, err := run(t, "rules", "test", rules, msg, "--client-ip", "192.0.2.5", "--data", dir)
	require.NoError(t, err, out)
	require.Contains(t, out, "MATCH    listed-net")
	require.Contains(t, out, "MATCH    subject")
	require.Contains(t, out, "=> reject by rule subject: 554 5.7.1 no thanks")
}

func mustDefaultRules() []byte {
	out, err := os.ReadFile("../../config/default-rules.yaml")
	if err != nil {
		panic(err)
	}
	return out
}

// TestSIGHUPReload: a new rule applies after SIGHUP; a broken file keeps the old rules.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte("rules: []\n"), 0o644))
	cfg := writeConfig(t, dir, "")
	require.NoError(t, appendFile(cfg, "rules: "+rules+"\n"))
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]
	require.NoError(t, sendOne(addr, "before"))

	require.NoError(t, os.WriteFile(rules, []byte("rules:\n  - name: no-mail-today\n    if: msg.subject startsWith \"after\"\n    reject: 554 5.7.1 \"closed today\"\n"), 0o644))
	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGHUP))
	requireEventually(t, func() bool { return strings.Contains(srv.logText(), "rules reloaded") })
	err := sendOne(addr, "after-reload")
	var se *smtp.SMTPError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 554, se.Code)

	require.NoError(t, os.WriteFile(rules, []byte("rules:\n  - name: broken\n    if: msg.nope\n    reject: true\n"), 0o644))
	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGHUP))
	requireEventually(t, func() bool { return strings.Contains(srv.logText(), "reload failed") })
	require.Contains(t, srv.logText(), "msg has no field nope")
	err = sendOne(addr, "after-broken-reload")
	require.ErrorAs(t, err, &se, "the old rules stay in force")
	require.NoError(t, sendOne(addr, "other"))
}

func requireEventually(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var passwordRe = regexp.MustCompile(`Created the user (\S+) with the password\s+(\S+)`)

// TestFirstStartSubmission is the newcomer's path: the first start creates the postmaster
// and prints its password; with it a client submits over STARTTLS with AUTH, and the
// message lands in the postmaster's maildir. AUTH is not offered before TLS.
func TestFirstStartSubmission(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "    - { name: submission, addr: \"127.0.0.1:0\", mode: submission }\n")
	require.NoError(t, appendFile(cfg, "postmaster: postmaster@example.test\n"))
	srv := startServer(t, cfg, "mx", "submission")
	defer srv.kill()
	requireEventually(t, func() bool { return passwordRe.MatchString(srv.logText()) })
	m := passwordRe.FindStringSubmatch(srv.logText())
	user, pass := m[1], m[2]

	c, err := smtp.Dial(srv.addrs["submission"])
	require.NoError(t, err)
	require.NoError(t, c.Hello("laptop.example.net"))
	ok, _ := c.Extension("AUTH")
	require.False(t, ok, "AUTH must not be offered before STARTTLS")
	c.Close()
	c, err = smtp.DialStartTLS(srv.addrs["submission"], &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, err)
	require.NoError(t, c.Hello("laptop.example.net"))
	ok, _ = c.Extension("AUTH")
	require.True(t, ok)
	require.Error(t, c.Auth(sasl.NewPlainClient("", user, "wrong-password")))
	require.NoError(t, c.Auth(sasl.NewPlainClient("", user, pass)))
	msg := "From: postmaster@example.test\r\nTo: postmaster@example.test\r\nSubject: submitted\r\nDate: " +
		time.Now().Format(time.RFC1123Z) + "\r\nMessage-ID: <s1@example.test>\r\n\r\nhello\r\n"
	require.NoError(t, c.SendMail(user, []string{"postmaster@example.test"}, strings.NewReader(msg)))
	c.Close()

	requireEventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "data/mail/example.test/postmaster/Maildir/new/*"))
		return len(files) == 1
	})

	// A second start does not create the user again.
	srv.kill()
	srv2 := startServer(t, cfg, "mx", "submission")
	defer srv2.kill()
	require.NotContains(t, srv2.logText(), "Created the user")
}

func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader("s3cret-passphrase\n"))
	root.SetArgs([]string{"user", "add", "alice@Example.TEST", "--password-stdin", "--data", dir})
	require.NoError(t, root.Execute(), out.String())
	got, err := run(t, "user", "list", "--data", dir)
	require.NoError(t, err)
	require.Contains(t, got, "alice@example.test")
	_, err = run(t, "user", "del", "alice@example.test", "--data", dir)
	require.NoError(t, err)
	got, err = run(t, "user", "list", "--data", dir)
	require.NoError(t, err)
	require.NotContains(t, got, "alice@example.test")
}

// TestBayesCommands trains a database from a slice of the corpus with the CLI, then
// classifies a spam and a ham of the test split and reads the stats.
func TestBayesCommands(t *testing.T) {
	corpus := testenv.Corpus(t)
	dir := t.TempDir()
	pick := func(split, class string, n int) string {
		files, err := filepath.Glob(filepath.Join(corpus, split, class, "*.eml"))
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(files), n)
		d := filepath.Join(dir, split+"-"+class)
		require.NoError(t, os.MkdirAll(d, 0o755))
		for _, f := range files[:n] {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(d, filepath.Base(f)), b, 0o644))
		}
		return d
	}
	spam, ham := pick("train", "spam", 150), pick("train", "ham", 150)
	out, err := run(t, "bayes", "train", "--spam", spam, "--ham", ham, "--data", dir)
	require.NoError(t, err, out)
	out, err = run(t, "bayes", "stats", "--data", dir)
	require.NoError(t, err, out)
	// 150 of each trained, plus the reinforcements of the train-until-no-error passes.
	require.Regexp(t, `trained: 1[5-9][0-9] spam, 1[5-9][0-9] ham \(300 tracked for untrain\)`, out)
	testSpam, testHam := pick("test", "spam", 5), pick("test", "ham", 5)
	out, err = run(t, "bayes", "classify", "--json", testSpam, testHam, "--data", dir)
	require.NoError(t, err, out)
	require.Equal(t, 10, strings.Count(out, "\n"), out)
}

// TestIMAPAndPOP3 reads delivered mail through the binary's IMAP (STARTTLS) and POP3
// (STLS) listeners with the postmaster's printed password.
func TestIMAPAndPOP3(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	require.NoError(t, appendFile(cfg, "postmaster: postmaster@example.test\n"))
	srv := startServer(t, cfg, "mx", "imap", "pop3")
	defer srv.kill()
	requireEventually(t, func() bool { return passwordRe.MatchString(srv.logText()) })
	m := passwordRe.FindStringSubmatch(srv.logText())
	require.NoError(t, sendOne(srv.addrs["mx"], "for-imap"))
	requireEventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "data/mail/example.test/postmaster/Maildir/new/*"))
		return len(files) == 1
	})

	ic, err := imapclient.DialStartTLS(srv.addrs["imap"], &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	require.NoError(t, err)
	defer ic.Close()
	require.NoError(t, ic.Login(m[1], m[2]).Wait())
	sel, err := ic.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.EqualValues(t, 1, sel.NumMessages)
	msgs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	require.NoError(t, err)
	require.Equal(t, "for-imap", msgs[0].Envelope.Subject)
	require.NoError(t, ic.Logout().Wait())

	// POP3: plain USER/PASS is refused before STLS; after it the message is listed.
	pc, err := net.Dial("tcp", srv.addrs["pop3"])
	require.NoError(t, err)
	defer pc.Close()
	r := bufio.NewReader(pc)
	line := func() string { l, _ := r.ReadString('\n'); return l }
	require.Contains(t, line(), "+OK")
	fmt.Fprintf(pc, "USER %s\r\n", m[1])
	require.Contains(t, line(), "-ERR")
}

// TestLMTPIntoStore: a front-end delivers over LMTP to the binary; the known user's
// recipient gets 250 and the message is in the mailbox, the unknown one gets 550 at RCPT.
func TestLMTPIntoStore(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "    - { name: lmtp, addr: \"127.0.0.1:0\", mode: lmtp }\n")
	require.NoError(t, appendFile(cfg, "postmaster: postmaster@example.test\n"))
	srv := startServer(t, cfg, "mx", "lmtp")
	defer srv.kill()
	cl, err := lmtp.New(lmtp.Config{LocalName: "front.example.test"})
	require.NoError(t, err)
	defer cl.Close()
	msg := []byte("From: a@example.net\r\nTo: postmaster@example.test\r\nSubject: over lmtp\r\n\r\nhi\r\n")
	res, err := cl.Deliver(context.Background(), "lmtp:"+srv.addrs["lmtp"], "a@example.net",
		[]string{"postmaster@example.test", "nobody@example.test"}, bytes.NewReader(msg), int64(len(msg)))
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.Equal(t, lmtp.Delivered, res[0].Status, res[0].Reply)
	require.Equal(t, lmtp.Permanent, res[1].Status, res[1].Reply)
	files, _ := filepath.Glob(filepath.Join(dir, "data/mail/example.test/postmaster/Maildir/new/*"))
	require.Len(t, files, 1, "250 over LMTP means the message is in the mailbox")
}
