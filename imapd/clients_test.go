package imapd

import (
	"context"
	"crypto/tls"
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
	"github.com/emersion/go-sasl"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/store"
	"github.com/portcullis-mail/portcullis/store/maildir"
)

func TestPythonImaplib(t *testing.T) {
	py := testenv.Program(t, "python3")
	e := start(t, Config{})
	e.deliver(t, "alice@example.org", msgA)
	e.deliver(t, "alice@example.org", msgB)
	host, port, _ := net.SplitHostPort(e.addr)
	script := `
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[3])
ctx.check_hostname = False
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=10)
assert 'LOGINDISABLED' in m.capabilities, m.capabilities
m.starttls(ssl_context=ctx)
m.login('alice@example.org', 'secret pw')
typ, data = m.list()
names = b' '.join(data)
assert b'\\Sent' in names and b'"Trash"' in names, data
typ, data = m.select('INBOX')
assert data == [b'2'], data
typ, data = m.search(None, 'BODY', 'zebra')
assert data == [b'1'], data
typ, data = m.search(None, 'OR', 'SUBJECT', 'lunch', 'FROM', 'ann')
assert data == [b'1 2'], data
typ, data = m.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
assert b'quarterly report' in data[0][1], data
typ, data = m.append('INBOX', '(\\Seen $Later)', imaplib.Time2Internaldate(time.time()), b'Subject: py\r\n\r\nfrom python\r\n')
assert typ == 'OK', data
typ, data = m.uid('COPY', '1:2', 'Trash')
assert typ == 'OK', data
m.store('1', '+FLAGS', '\\Deleted')
typ, data = m.expunge()
assert data == [b'1'], data
typ, data = m.status('Trash', '(MESSAGES UIDNEXT)')
assert b'MESSAGES 2' in data[0], data
m.create('Py/Sub')
typ, data = m.list('""', 'Py/%')
assert b'Py/Sub' in data[0], data
m.logout()
print('ok')
`
	out, err := exec.Command(py, "-c", script, host, port, e.cert).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	msgs := mailboxtest.Inbox(t, e.store, "alice@example.org")
	if len(msgs) != 2 || strings.Join(msgs[1].Flags, " ") != `$Later \Seen` {
		t.Fatalf("after imaplib: %+v", msgs)
	}
}

func TestImplicitTLS(t *testing.T) {
	e := start(t, Config{})
	c, err := imapclient.DialTLS(mailboxtest.ServeTLS(t, e.srv, e.tls), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("bob@example.org", "pw2").Wait(); err != nil {
		t.Fatalf("LOGIN over implicit TLS: %v", err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
}

// mbsync (isync) syncs a mailbox both ways: server → local maildir, then local changes
// (new message, flag change, deletion) back to the server, over COMPRESS=DEFLATE.
func TestMbsyncBothWays(t *testing.T) {
	mbsync := testenv.Program(t, "mbsync")
	e := start(t, Config{})
	ctx := context.Background()
	e.deliver(t, "alice@example.org", msgA)
	e.deliver(t, "alice@example.org", msgB)
	if _, err := e.store.Deliver(ctx, "alice@example.org", "Sent", strings.NewReader("Subject: sent one\r\n\r\nx\r\n"), []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	os.MkdirAll(local, 0o700)
	rc := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`IMAPAccount portcullis
Host %s
Port %s
User alice@example.org
Pass "secret pw"
SSLType STARTTLS
CertificateFile %s
AuthMechs LOGIN
Timeout 20

IMAPStore remote
Account portcullis

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Sent Trash
Create Both
Expunge Both
SyncState *
Sync All
`, host, port, e.cert, local, local)), 0o600)
	run := func() {
		t.Helper()
		// -Dn shows the dialogue: mbsync compresses when COMPRESS=DEFLATE is offered,
		// with Z_PARTIAL_FLUSH after each batch of commands (Go's inflaters held back
		// the end of such a batch, and mbsync timed out: imapd/internal/inflate).
		cmd := exec.Command(mbsync, "-c", rc, "-a", "-V", "-Dn")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "OK DEFLATE active") {
			t.Fatalf("mbsync did not compress:\n%s", out)
		}
	}
	run()
	inbox := maildir.Dir(filepath.Join(local, "INBOX"))
	es, err := inbox.Scan()
	if err != nil || len(es) != 2 {
		t.Fatalf("local INBOX after first sync: %d %v", len(es), err)
	}
	sent, _ := maildir.Dir(filepath.Join(local, "Sent")).Scan()
	if len(sent) != 1 || !sent[0].Name.Flags.Has('S') {
		t.Fatalf("local Sent: %+v", sent)
	}
	// Local changes: flag the first message, delete the second, add a new one.
	var first, second maildir.Entry
	for _, en := range es {
		f, _ := inbox.Open(en)
		b := make([]byte, 4096)
		n, _ := f.Read(b)
		f.Close()
		if strings.Contains(string(b[:n]), "quarterly") {
			first = en
		} else {
			second = en
		}
	}
	if _, err := inbox.SetFlags(first, "FS"); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.SetFlags(second, "T"); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Deliver(strings.NewReader("From: alice@example.org\r\nSubject: written offline\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	// And a server-side change: a new delivery.
	e.deliver(t, "alice@example.org", "Subject: while away\r\n\r\nz\r\n")
	time.Sleep(1100 * time.Millisecond) // mbsync compares maildir mtimes at 1 s resolution
	run()

	u, _ := e.store.Open(ctx, "alice@example.org")
	defer u.Release()
	_, msgs, _ := u.Messages(ctx, "INBOX")
	var got []string
	for _, m := range msgs {
		f, _ := u.Open(store.Mailbox{Name: "INBOX"}, m)
		b := make([]byte, 4096)
		n, _ := f.Read(b)
		f.Close()
		subj := ""
		for _, l := range strings.Split(string(b[:n]), "\r\n") {
			if strings.HasPrefix(l, "Subject: ") {
				subj = strings.TrimPrefix(l, "Subject: ")
			}
		}
		got = append(got, subj+"="+strings.Join(m.Flags, " "))
	}
	want := `quarterly report=\Flagged \Seen|while away=|written offline=`
	if strings.Join(got, "|") != want {
		t.Fatalf("server INBOX after second sync:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	es, _ = inbox.Scan()
	if len(es) != 3 {
		t.Fatalf("local INBOX after second sync has %d messages", len(es))
	}
}

func TestAuthenticatePlain(t *testing.T) {
	e := start(t, Config{})
	c, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewPlainClient("", "bob@example.org", "wrong")); err == nil {
		t.Fatal("bad password accepted")
	}
	if err := c.Authenticate(sasl.NewPlainClient("", "bob@example.org", "pw2")); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}
