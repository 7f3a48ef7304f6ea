package headers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// postfixServer starts a real Postfix (master, smtpd, cleanup) on a loopback port with
// the given main.cf lines, and stops it when the test ends. It needs root, as Postfix
// does; without root or Postfix it skips (fails in CI).
func postfixServer(t *testing.T, extra string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "starting Postfix needs root")
	}
	pf := testenv.Program(t, "postfix")
	dir, err := os.MkdirTemp("", "portcullis-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	conf, queue, data := filepath.Join(dir, "conf"), filepath.Join(dir, "queue"), filepath.Join(dir, "data")
	for _, d := range []string{conf, queue, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
	if err := exec.Command("chown", "postfix", data).Run(); err != nil {
		testenv.Unavailable(t, "no postfix user: %v", err)
	}
	addr := testenv.FreeAddr(t)
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.test.invalid
mydomain = test.invalid
myorigin = test.invalid
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
relay_transport = discard:
default_transport = discard:
local_transport = discard:
smtpd_recipient_restrictions = permit_mynetworks, reject
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
smtputf8_enable = no
biff = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
message_size_limit = 30000000
%[2]s
`, dir, extra)
	master := addr + ` inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	writeMainCF(t, conf, main)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, pf, "-c", conf, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v %s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		exec.CommandContext(ctx, pf, "-c", conf, "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("postfix log:\n%s", log)
		}
		os.RemoveAll(dir)
	})
	if err := testenv.WaitPort(addr, 30*time.Second); err != nil {
		t.Fatalf("postfix did not listen: %v", err)
	}
	return addr
}

// sendToPostfix sends raw over SMTP and returns Postfix's reply to the end of DATA.
func sendToPostfix(addr string, raw []byte) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClient(conn, "mx.test.invalid")
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Mail("sender@test.invalid"); err != nil {
		return "", err
	}
	if err := c.Rcpt("rcpt@example.com"); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	w.Write(raw)
	err = w.Close()
	c.Quit()
	var te *textproto.Error
	if errors.As(err, &te) {
		return fmt.Sprintf("%d %s", te.Code, te.Msg), nil
	}
	if err != nil {
		return "", err
	}
	return "250", nil
}

// TestAgainstPostfix sends messages through a real Postfix configured with the shipped
// maps and requires the same end-of-DATA decision as Tables.Check: the same rejection
// reply, or acceptance. This checks which table sees which line (primary, MIME, nested
// headers and body lines), not just the regular expressions.
func TestAgainstPostfix(t *testing.T) {
	wd, _ := os.Getwd()
	addr := postfixServer(t, fmt.Sprintf(`header_checks = pcre:%[1]s/maps/header_checks.pcre
mime_header_checks = pcre:%[1]s/maps/mime_header_checks.pcre
body_checks = pcre:%[1]s/maps/body_checks.pcre`, wd))
	tables := shippedTables(t)

	var msgs [][]byte
	var names []string
	msgs, names = samples()
	// Corpus messages: every one the maps reject, and a sample of the others.
	if testenv.CorpusIfPresent(t) != "" {
		for i, raw := range corpus(t) {
			if raceEnabled && i%5 != 0 {
				continue // the race detector makes the selection walk slow
			}
			m, _ := content.WalkBytes(raw, content.Limits{})
			if tables.Check(m).Reject || i%60 == 0 {
				msgs, names = append(msgs, raw), append(names, fmt.Sprintf("corpus#%d", i))
			}
		}
	}
	compareSMTP(t, addr, tables, names, msgs, 5)
}

// TestAgainstPostfixRegexp does the same with the POSIX header_checks.regexp map as the
// only table, which Postfix (and we) also apply to MIME and nested headers.
func TestAgainstPostfixRegexp(t *testing.T) {
	wd, _ := os.Getwd()
	addr := postfixServer(t, fmt.Sprintf("header_checks = regexp:%s/maps/header_checks.regexp", wd))
	p, err := New(Config{HeaderChecks: "regexp:maps/header_checks.regexp"})
	if err != nil {
		t.Fatal(err)
	}
	tables := p.Tables()
	var msgs [][]byte
	var names []string
	msgs, names = samples()
	compareSMTP(t, addr, &tables, names, msgs, 3)
}

// differsOnPurpose are samples where we deliberately part from Postfix: a line that is no
// header field at the top of a message ends Postfix's header (the rest is body to it), while
// we read on as mail readers do (policy.ParseHeader), so the attachment it hides is seen.
var differsOnPurpose = map[string]bool{"junk-first-line.eml": true}

// samples returns the golden messages of the content package that Postfix and we must
// judge alike.
func samples() (msgs [][]byte, names []string) {
	files, _ := filepath.Glob("../content/testdata/*.eml")
	for _, f := range files {
		if differsOnPurpose[filepath.Base(f)] {
			continue
		}
		b, _ := os.ReadFile(f)
		msgs, names = append(msgs, b), append(names, filepath.Base(f))
	}
	return msgs, names
}

func compareSMTP(t *testing.T, addr string, tables *Tables, names []string, msgs [][]byte, minRejects int) {
	t.Helper()
	rejected := 0
	for i, raw := range msgs {
		// What Postfix receives: CRLF lines (net/smtp converts), as our SMTP server
		// stores them.
		crlf := bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		m, _ := content.WalkBytes(crlf, content.Limits{})
		rep := tables.Check(m)
		want := "250"
		if rep.Reject {
			want = rep.Decisive.Reply()
			rejected++
		}
		got, err := sendToPostfix(addr, raw)
		if err != nil {
			t.Errorf("%s: %v", names[i], err)
			continue
		}
		if got != want {
			t.Errorf("%s: postfix replied %q, we decide %q", names[i], got, want)
		}
	}
	t.Logf("%d messages, %d rejected by both", len(msgs), rejected)
	if rejected < minRejects {
		t.Errorf("only %d rejections compared", rejected)
	}
}
