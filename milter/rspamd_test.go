package milter_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
)

// startRspamd runs Debian's rspamd 3.4 with its stock rules and a private local.d: one
// proxy worker in milter mode scanning itself on a loopback port, no other worker, DNS
// to a closed port. It compiles its rules first (10 to 30 seconds).
func startRspamd(t *testing.T) string {
	t.Helper()
	bin := testenv.Program(t, "rspamd")
	if os.Getuid() != 0 {
		testenv.Unavailable(t, "rspamd drops to its own user: the test needs root")
	}
	dir, err := os.MkdirTemp("", "rspamd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	addr := testenv.FreeAddr(t)
	files := map[string]string{
		"local.d/worker-proxy.inc":      fmt.Sprintf("bind_socket = %q;\nmilter = yes;\ntimeout = 120s;\ncount = 1;\nupstream \"local\" { default = yes; self_scan = yes; }\n", addr),
		"local.d/worker-normal.inc":     "enabled = false;\n",
		"local.d/worker-controller.inc": "enabled = false;\n",
		"local.d/worker-fuzzy.inc":      "enabled = false;\n",
		"local.d/options.inc":           "dns { nameserver = [\"127.0.0.1:9\"]; timeout = 1s; retransmits = 1; }\n",
		"local.d/logging.inc":           "type = \"console\"; level = \"error\";\n",
	}
	for _, d := range []string{"local.d", "run", "db", "log"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exec.Command("chown", "-R", "_rspamd:_rspamd", dir).Run()
	cmd := exec.Command(bin, "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", "/etc/rspamd/rspamd.conf",
		"--var", "LOCAL_CONFDIR="+dir, "--var", "RUNDIR="+dir+"/run", "--var", "DBDIR="+dir+"/db", "--var", "LOGDIR="+dir+"/log")
	d, err := testenv.StartDaemon(cmd)
	if err != nil {
		t.Fatalf("rspamd: %v", err)
	}
	t.Cleanup(func() { d.Stop(syscall.SIGTERM, 10*time.Second) })
	if err := d.WaitReady(3*time.Minute, 200*time.Millisecond, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("rspamd: %v", err)
	}
	return addr
}

// TestClientRspamd: the milter client against a real rspamd proxy worker in milter mode:
// a plain message passes, the GTUBE test pattern is refused with rspamd's reply.
func TestClientRspamd(t *testing.T) {
	if testing.Short() {
		t.Skip("rspamd takes long to start")
	}
	addr := startRspamd(t)
	c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:" + addr, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), Port: 4242, HELO: "client.example.net"})
	s, d := c.Open(ctx, tx)
	defer s.Close()
	if d.Terminal() {
		t.Fatalf("connect: %+v", d)
	}
	send := func(body string) (policy.Decision, []byte) {
		tx.Reset()
		tx.Envelope.From = address.Parse("a@sender.example.net")
		if d := s.Mail(ctx, tx); d.Terminal() {
			t.Fatalf("mail: %+v", d)
		}
		tx.Rcpt = address.Parse("alice@example.test")
		if d := s.Rcpt(ctx, tx); d.Terminal() {
			t.Fatalf("rcpt: %+v", d)
		}
		raw := "From: <a@sender.example.net>\r\nTo: <alice@example.test>\r\nSubject: test\r\nDate: " +
			time.Now().Format(time.RFC1123Z) + "\r\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@sender.example.net>\r\n\r\n" + body + "\r\n"
		return s.Message(ctx, tx, []byte(raw))
	}
	if d := s.Helo(ctx, tx); d.Terminal() {
		t.Fatalf("helo: %+v", d)
	}
	d, out := send("Hello Alice, see you tomorrow at the station.")
	if d.Terminal() {
		t.Fatalf("plain message refused: %+v", d)
	}
	t.Logf("rspamd made of the plain message:\n%s", out)
	d, _ = send("XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
	if d.Verdict != policy.Reject || d.Reply.Code != 554 || !strings.Contains(strings.ToLower(d.Reply.Text), "gtube") {
		t.Fatalf("GTUBE: %+v", d)
	}
}
