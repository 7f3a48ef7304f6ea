package testenv_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

func TestDaemon(t *testing.T) {
	sh := testenv.Program(t, "sh")
	// A daemon that exits during startup: WaitReady says so, with its output.
	d, err := testenv.StartDaemon(exec.Command(sh, "-c", "echo broken config; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	err = d.WaitReady(5*time.Second, 10*time.Millisecond, func() error { return errors.New("not yet") })
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "broken config") {
		t.Fatalf("WaitReady on an exited daemon: %v", err)
	}
	// A daemon that never gets ready: WaitReady times out; Stop ends it.
	d, err = testenv.StartDaemon(exec.Command(sh, "-c", "exec sleep 60"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(100*time.Millisecond, 10*time.Millisecond, func() error { return errors.New("not yet") }); err == nil || !strings.Contains(err.Error(), "not yet") {
		t.Fatalf("WaitReady: %v", err)
	}
	d.Stop(syscall.SIGTERM, 5*time.Second)
	select {
	case <-d.Done():
	default:
		t.Fatal("Stop returned before the daemon exited")
	}
	d.Stop(syscall.SIGTERM, time.Second) // stopping twice is harmless
}

func TestFreePortAndWaitPort(t *testing.T) {
	addr := testenv.FreeAddr(t)
	if err := testenv.WaitPort(addr, 0); err == nil {
		t.Fatalf("%s accepted connections before anyone listened", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := testenv.WaitPort(addr, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestMaildirFiles(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{"new/2.b": "second", "cur/1.a:2,S": "first", "new/3.c": "third"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, b := range testenv.ReadFiles(t, testenv.MaildirFiles(dir)) {
		got = append(got, string(b))
	}
	if strings.Join(got, " ") != "first second third" {
		t.Fatalf("messages %q, want them in file-name order", got)
	}
}
