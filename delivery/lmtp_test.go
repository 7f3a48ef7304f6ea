package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store/maildir"
)

// startDovecotLMTP starts a real Dovecot with only LMTP on a loopback port, users bob and
// carol (passwd-file), and maildirs under the returned mail directory.
func startDovecotLMTP(t *testing.T) (addr, mailDir string) {
	t.Helper()
	dovecot, err := exec.LookPath("dovecot")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dovecot not installed (dovecot-core, dovecot-lmtpd)")
		}
		t.Skip("dovecot not installed (dovecot-core, dovecot-lmtpd)")
	}
	if _, err := os.Stat("/usr/lib/dovecot/lmtp"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dovecot-lmtpd not installed")
		}
		t.Skip("dovecot-lmtpd not installed")
	}
	dir, err := os.MkdirTemp("", "dvl") // short: socket paths must fit in sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 { // Dovecot will not deliver as root
		uid, gid = 65534, 65534
	}
	mailDir = filepath.Join(dir, "mail")
	os.MkdirAll(mailDir, 0o755)
	os.Chown(mailDir, uid, gid)
	for _, sub := range []string{"run", "state"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	users := ""
	for _, u := range []string{"bob", "carol"} {
		users += fmt.Sprintf("%s@example.test:{PLAIN}secret:%d:%d::%s/home/%s::\n", u, uid, gid, dir, u)
	}
	os.WriteFile(filepath.Join(dir, "users"), []byte(users), 0o644)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
protocols = lmtp
listen = 127.0.0.1
postmaster_address = postmaster@example.test
mail_location = maildir:%[2]s/%%d/%%n/Maildir
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
}
first_valid_uid = 1
`, dir, mailDir, port)), 0o644)
	// dovecot forks into the background: its output must not be a pipe we wait on.
	if err := exec.Command(dovecot, "-c", conf).Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Fatalf("start dovecot: %v\n%s", err, log)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "run", "master.pid")); err == nil {
			var pid int
			if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
				if p, err := os.FindProcess(pid); err == nil {
					p.Signal(os.Interrupt)
					time.Sleep(200 * time.Millisecond)
					p.Kill()
				}
			}
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i == 50 {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot LMTP not listening on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return addr, mailDir
}

func dovecotBox(t *testing.T, mailDir, user string) []string {
	t.Helper()
	d := maildir.Dir(filepath.Join(mailDir, "example.test", user, "Maildir"))
	es, _ := d.Scan()
	var out []string
	for _, e := range es {
		f, err := d.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, string(b))
	}
	return out
}

// TestLMTPToDovecot queues messages whose recipients are delivered by LMTP into a real
// Dovecot: known users get the message, an unknown one is bounced to the sender (a Dovecot
// user too), and the queue ends empty.
func TestLMTPToDovecot(t *testing.T) {
	addr, mailDir := startDovecotLMTP(t)
	lmtp, err := NewLMTP(LMTPConfig{Network: "tcp", Addr: addr, LocalName: "mx.example.test", CommandTimeout: 30 * time.Second, DataTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer lmtp.Close()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	router := RouterFunc(func(ctx context.Context, rcpt string) (Route, error) {
		return Route{Transport: lmtp, Dest: "lmtp:" + addr}, nil
	})
	q, err := New(Config{Hostname: "mx.example.test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sp, router)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const n = 10
	for i := range n {
		env := spool.Envelope{From: "carol@example.test", To: []string{"bob@example.test", "nobody@example.test"}, ReceivedAt: time.Now()}
		msg := fmt.Sprintf("From: carol@example.test\r\nTo: bob@example.test\r\nSubject: lmtp %d\r\n\r\nline\n.leading dot\r\n", i)
		if _, err := sp.Enqueue(ctx, env, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := q.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if ids, _ := sp.List(); len(ids) != 0 {
		var b strings.Builder
		Show(sp, &b, ids[0])
		t.Fatalf("%d messages left in the queue:\n%s", len(ids), b.String())
	}
	bob := dovecotBox(t, mailDir, "bob")
	if len(bob) != n {
		t.Fatalf("bob has %d messages in Dovecot, want %d", len(bob), n)
	}
	if !strings.Contains(bob[0], "\n.leading dot\n") || !strings.Contains(bob[0], "Subject: lmtp") {
		t.Fatalf("message as Dovecot stored it: %q", bob[0])
	}
	carol := dovecotBox(t, mailDir, "carol")
	if len(carol) != n {
		t.Fatalf("carol has %d bounces, want %d", len(carol), n)
	}
	_, status, _, _ := dsnOf(t, carol[0])
	if !strings.Contains(status, "Final-Recipient: rfc822; nobody@example.test") || !strings.Contains(status, "Status: 5.1.1") || strings.Contains(status, "bob@") {
		t.Fatalf("bounce status:\n%s", status)
	}
}

func TestLMTPUnreachableDefers(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	lmtp, _ := NewLMTP(LMTPConfig{Network: "tcp", Addr: addr, DialTimeout: time.Second})
	res := lmtp.Deliver(context.Background(), spool.Envelope{From: "a@example.org"}, []string{"x@example.test", "y@example.test"}, strings.NewReader("Subject: x\r\n\r\n"))
	if len(res) != 2 || res[0].Err == nil || IsPermanent(res[0].Err) || !strings.HasPrefix(res[1].Reply, "451 4.4.1 ") {
		t.Fatalf("results %+v", res)
	}
}
