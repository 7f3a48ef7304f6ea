package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestDovecotReadsStore starts a real Dovecot (doveadm against its auth service) on the
// store's maildirs: Dovecot must see our folders, messages and flags, and flag changes
// Dovecot makes (by renaming files) must come back into our index.
func TestDovecotReadsStore(t *testing.T) {
	dovecot := testenv.Program(t, "dovecot")
	doveadm := testenv.Program(t, "doveadm")
	dir, err := os.MkdirTemp("", "dvc") // short: Dovecot's socket paths must fit in sun_path
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	mail := filepath.Join(dir, "mail")
	ctx := context.Background()
	s := newStore(t, Config{Dir: mail})
	if _, err := s.Deliver(ctx, "alice@example.org", "", strings.NewReader("Subject: first\r\n\r\nhello\r\n"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, "alice@example.org", "", strings.NewReader("Subject: second\r\n\r\nhello\r\n"), []string{FlagSeen, FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, "alice@example.org", "Sent", strings.NewReader("Subject: sent\r\n\r\nbye\r\n"), []string{FlagSeen}); err != nil {
		t.Fatal(err)
	}
	u := open(t, s, "alice@example.org")
	u.Create(ctx, "Lists/go", "")

	// Dovecot refuses uid 0 for mail access; as root, hand the tree to nobody.
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
		filepath.Walk(mail, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				os.Lchown(p, uid, gid)
			}
			return nil
		})
		os.Chmod(mail, 0o755)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
protocols =
mail_location = maildir:%[2]s/%%d/%%n/Maildir:INDEX=MEMORY
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = static
  args = password=unused
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[1]s/home/%%u
}
first_valid_uid = 1
`, dir, mail, uid, gid)), 0o644)
	os.MkdirAll(filepath.Join(dir, "run"), 0o755)
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	// dovecot forks into the background; its output must not be a pipe we wait on.
	start := exec.Command(dovecot, "-c", conf)
	if err := start.Run(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	defer func() {
		exec.Command(doveadm, "-c", conf, "stop").Run()
		if b, err := os.ReadFile(filepath.Join(dir, "run", "master.pid")); err == nil {
			var pid int
			if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
	}()
	adm := func(args ...string) string {
		t.Helper()
		var out []byte
		var err error
		for i := 0; i < 50; i++ { // the auth socket appears shortly after start
			out, err = exec.Command(doveadm, append([]string{"-c", conf}, args...)...).CombinedOutput()
			if err == nil {
				return string(out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("doveadm %v: %v\n%s\n%s", args, err, out, log)
		return ""
	}
	got := adm("fetch", "-u", "alice@example.org", "mailbox flags hdr.subject", "mailbox", "*", "all")
	for _, want := range []string{
		"mailbox: INBOX\nflags: \\Recent\nhdr.subject: first",
		"mailbox: INBOX\nflags: \\Flagged \\Seen \\Recent\nhdr.subject: second",
		"mailbox: Sent\nflags: \\Seen \\Recent\nhdr.subject: sent",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("doveadm fetch lacks %q:\n%s", want, got)
		}
	}
	boxes := adm("mailbox", "list", "-u", "alice@example.org")
	for _, b := range []string{"INBOX", "Sent", "Drafts", "Junk", "Trash", "Lists/go"} {
		if !strings.Contains(boxes, b+"\n") {
			t.Fatalf("dovecot does not list %s:\n%s", b, boxes)
		}
	}
	// Dovecot changes flags (by renaming in cur); our next sync takes them over.
	adm("flags", "add", "-u", "alice@example.org", `\Answered`, "mailbox", "INBOX", "all")
	_, msgs, err := u.Messages(ctx, "INBOX")
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d %v", len(msgs), err)
	}
	if strings.Join(msgs[0].Flags, " ") != `\Answered` || strings.Join(msgs[1].Flags, " ") != `\Answered \Flagged \Seen` {
		es, _ := u.root.Scan()
		t.Fatalf("flags after Dovecot: %v %v (%+v) files %+v", msgs[0].Flags, msgs[1].Flags, msgs[0], es)
	}
}
