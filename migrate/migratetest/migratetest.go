// Package migratetest runs a private Dovecot as a migration source for tests: IMAP and
// POP3 on free loopback ports (plaintext logins allowed, no TLS), maildirs under a
// temporary directory, users from a passwd-file (password "secret") and a master user
// "admin" (password "masterpw") that may log in as any of them (SASL PLAIN authorization
// identity, or "user*admin"). The special-use folders Sent, Drafts, Junk, Trash and
// Archive are announced (RFC 6154). The server is the real Dovecot (Debian packages
// dovecot-core, dovecot-imapd, dovecot-pop3d), stopped when the test ends.
package migratetest

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

// Master user and password of every Dovecot started here.
const (
	Master         = "admin"
	MasterPassword = "masterpw"
	Password       = "secret"
)

// Dovecot is a running Dovecot IMAP and POP3 server.
type Dovecot struct {
	Dir              string
	imap, pop, sieve string
	d                *testenv.Daemon
}

// Start starts Dovecot with the given users (full addresses).
func Start(t testing.TB, users ...string) *Dovecot {
	t.Helper()
	bin := testenv.Program(t, "dovecot")
	for _, p := range []string{"/usr/lib/dovecot/imap", "/usr/lib/dovecot/pop3"} {
		if _, err := os.Stat(p); err != nil {
			testenv.Unavailable(t, "migratetest: %s is not installed (Debian packages dovecot-imapd, dovecot-pop3d)", p)
		}
	}
	dir, err := os.MkdirTemp("", "mgt") // short: socket paths must fit in sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534 // Dovecot refuses mail access as root
	}
	for _, d := range []string{"run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(filepath.Join(dir, "mail"), uid, gid)
	var pw bytes.Buffer
	for _, u := range users {
		if strings.ContainsAny(u, ":\n") {
			t.Fatalf("migratetest: bad user %q", u)
		}
		fmt.Fprintf(&pw, "%s:{PLAIN}%s:%d:%d::%s::\n", u, Password, uid, gid, filepath.Join(dir, "mail", u))
	}
	os.WriteFile(filepath.Join(dir, "users"), pw.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "masters"), []byte(Master+":{PLAIN}"+MasterPassword+"\n"), 0o644)
	imapPort, popPort, sievePort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	// ManageSieve (Debian package dovecot-managesieved) when installed: scripts in
	// ~/sieve, the active one linked from ~/.dovecot.sieve.
	protocols, sieveConf := "imap pop3", ""
	if _, err := os.Stat("/usr/lib/dovecot/managesieve"); err == nil {
		protocols = "imap pop3 sieve"
		sieveConf = fmt.Sprintf(`service managesieve-login {
  inet_listener sieve {
    address = 127.0.0.1
    port = %d
  }
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
`, sievePort)
	}
	conf := fmt.Sprintf(`# written by migratetest
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
listen = 127.0.0.1
protocols = %[4]s
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
mail_location = maildir:%[1]s/mail/%%u/Maildir
first_valid_uid = 1
default_vsz_limit = 0
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
  }
  mailbox Drafts {
    special_use = \Drafts
  }
  mailbox Junk {
    special_use = \Junk
  }
  mailbox Trash {
    special_use = \Trash
  }
  mailbox Archive {
    special_use = \Archive
  }
}
passdb {
  driver = passwd-file
  args = %[1]s/masters
  master = yes
  pass = yes
}
passdb {
  driver = passwd-file
  args = %[1]s/users
}
userdb {
  driver = passwd-file
  args = %[1]s/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[3]d
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
%[5]s`, dir, imapPort, popPort, protocols, sieveConf)
	cf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	d := &Dovecot{Dir: dir, imap: fmt.Sprintf("127.0.0.1:%d", imapPort), pop: fmt.Sprintf("127.0.0.1:%d", popPort)}
	if sieveConf != "" {
		d.sieve = fmt.Sprintf("127.0.0.1:%d", sievePort)
	}
	cmd := exec.Command(bin, "-F", "-c", cf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if d.d, err = testenv.StartDaemon(cmd); err != nil {
		t.Fatalf("migratetest: starting dovecot: %v", err)
	}
	t.Cleanup(d.Stop)
	for _, a := range []string{d.imap, d.pop, d.sieve} {
		if a == "" {
			continue
		}
		if err := d.d.WaitReady(15*time.Second, 50*time.Millisecond, func() error { return testenv.WaitPort(a, 0) }); err != nil {
			t.Fatalf("migratetest: port %s: %v\n%s", a, err, d.Log())
		}
	}
	return d
}

// Stop stops Dovecot.
func (d *Dovecot) Stop() { d.d.Stop(syscall.SIGTERM, 10*time.Second) }

// IMAPAddr is the IMAP listener.
func (d *Dovecot) IMAPAddr() string { return d.imap }

// POP3Addr is the POP3 listener.
func (d *Dovecot) POP3Addr() string { return d.pop }

// SieveAddr is the ManageSieve listener, "" when dovecot-managesieved is not installed.
func (d *Dovecot) SieveAddr() string { return d.sieve }

// Home returns user's home directory (its sieve/ and .dovecot.sieve live there).
func (d *Dovecot) Home(user string) string { return filepath.Join(d.Dir, "mail", user) }

// Maildir returns the maildir of user.
func (d *Dovecot) Maildir(user string) string { return filepath.Join(d.Dir, "mail", user, "Maildir") }

// Log returns what Dovecot logged so far.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	return string(b)
}
