// Package dovecottest runs a private Dovecot LMTP server for tests: a minimal
// dovecot.conf in a temporary directory, users from a passwd-file whose mail goes to
// maildirs under that directory, an LMTP listener on a free loopback port and a unix
// socket. The server is the real Dovecot (Debian packages dovecot-core and
// dovecot-lmtpd), started as a child process (`dovecot -F`) and stopped when the test
// ends.
//
//	dc := dovecottest.Start(t, "alice@example.test", "bob@example.test")
//	// deliver to dc.LMTPAddr() ...
//	msgs := dc.Messages(t, "alice@example.test")
//
// When Dovecot is not installed the test is skipped, or fails when CI=true.
package dovecottest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// Dovecot is a running Dovecot LMTP server.
type Dovecot struct {
	// Dir holds the configuration, the log (dovecot.log) and the mail (mail/).
	Dir  string
	addr string
	d    *testenv.Daemon
}

// Start starts Dovecot with the given users (full addresses such as
// "alice@example.test"; the password of each is "secret") and stops it at the end of the
// test.
func Start(t testing.TB, users ...string) *Dovecot {
	t.Helper()
	bin := testenv.Program(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/lmtp"); err != nil {
		testenv.Unavailable(t, "dovecottest: dovecot's lmtp service is not installed (Debian package dovecot-lmtpd)")
	}
	// A directory of our own, not t.TempDir(): the mail user must traverse it.
	dir, err := os.MkdirTemp("", "dovecottest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Dovecot refuses to deliver as root: as root, mail belongs to nobody.
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
	}
	mail := filepath.Join(dir, "mail")
	for _, d := range []string{"run", "state", "mail", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(mail, uid, gid)
	os.Chown(filepath.Join(dir, "home"), uid, gid)
	var pw bytes.Buffer
	for _, u := range users {
		if strings.ContainsAny(u, ":\n") {
			t.Fatalf("dovecottest: bad user %q", u)
		}
		fmt.Fprintf(&pw, "%s:{PLAIN}secret:%d:%d::%s::\n", u, uid, gid, filepath.Join(dir, "home", u))
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), pw.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	conf := fmt.Sprintf(`# written by dovecottest
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
ssl = no
listen = 127.0.0.1
protocols = lmtp
mail_location = maildir:%[2]s/%%d/%%n/Maildir
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = %[1]s/users
}
userdb {
  driver = passwd-file
  args = %[1]s/users
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[3]d
  }
  unix_listener lmtp {
    path = lmtp
    mode = 0666
  }
  process_min_avail = 1
}
service anvil {
  chroot =
}
`, dir, mail, port)
	cf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Dovecot{Dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	cmd := exec.Command(bin, "-F", "-c", cf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if d.d, err = testenv.StartDaemon(cmd); err != nil {
		t.Fatalf("dovecottest: starting dovecot: %v", err)
	}
	t.Cleanup(d.Stop)
	if err := d.d.WaitReady(15*time.Second, 50*time.Millisecond, func() error { return testenv.WaitPort(d.addr, 0) }); err != nil {
		t.Fatalf("dovecottest: LMTP port %s: %v\n%s", d.addr, err, d.Log())
	}
	return d
}

// Stop stops Dovecot (a store that goes away). Stopping twice is harmless.
func (d *Dovecot) Stop() { d.d.Stop(syscall.SIGTERM, 10*time.Second) }

// LMTPAddr is the LMTP listener, "127.0.0.1:PORT".
func (d *Dovecot) LMTPAddr() string { return d.addr }

// LMTPSocket is the path of the LMTP unix socket.
func (d *Dovecot) LMTPSocket() string { return filepath.Join(d.Dir, "run", "lmtp") }

// Maildir returns the maildir of user (a full address).
func (d *Dovecot) Maildir(user string) string {
	local, domain := user, ""
	if i := strings.LastIndexByte(user, '@'); i >= 0 {
		local, domain = user[:i], user[i+1:]
	}
	return filepath.Join(d.Dir, "mail", domain, local, "Maildir")
}

// Messages returns the messages in user's INBOX (new/ and cur/), oldest first by file
// name.
func (d *Dovecot) Messages(t testing.TB, user string) [][]byte {
	t.Helper()
	return testenv.ReadFiles(t, testenv.MaildirFiles(d.Maildir(user)))
}

// Count returns the number of messages in user's INBOX.
func (d *Dovecot) Count(user string) int { return len(testenv.MaildirFiles(d.Maildir(user))) }

// Log returns what Dovecot logged so far.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	return string(b)
}
