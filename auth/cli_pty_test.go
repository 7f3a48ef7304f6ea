//go:build linux

package auth

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (posix_openpt, unlockpt, ptsname by hand).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		t.Skipf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		t.Skipf("ptsname: %v", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestPasswordPrompt drives the interactive prompt through a real terminal: echo off,
// the password asked twice, a mismatch refused.
func TestPasswordPrompt(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, "")
	for _, tc := range []struct {
		typed   string
		wantErr string
	}{
		{"tty secret\ntty secret\n", ""},
		{"one\ntwo\n", "do not match"},
	} {
		master, slave := openPTY(t)
		transcript := make(chan string, 1)
		go func() {
			var all strings.Builder
			defer func() { transcript <- all.String() }()
			// Answer each prompt as it appears, as a person would.
			buf := make([]byte, 256)
			lines := strings.SplitAfter(tc.typed, "\n")
			var seen strings.Builder
			for _, l := range lines[:2] {
				for !strings.Contains(seen.String(), "password: ") {
					n, err := master.Read(buf)
					if err != nil {
						return
					}
					seen.Write(buf[:n])
					all.Write(buf[:n])
				}
				seen.Reset()
				// Type only once echo is off, as term.ReadPassword turns it off just
				// after the prompt; text typed before would be echoed by any program.
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					if tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS); err != nil || tio.Lflag&unix.ECHO == 0 {
						break
					}
				}
				master.Write([]byte(l))
			}
		}()
		var out strings.Builder
		addr := fmt.Sprintf("tty%d@example.org", len(tc.typed))
		errc := make(chan error, 1)
		go func() { errc <- AddUserCmd(ctx, db, addr, PasswordInput{In: slave, Prompt: slave}, &out) }()
		var err error
		select {
		case err = <-errc:
		case <-time.After(20 * time.Second):
			t.Fatal("prompt hung")
		}
		// With echo off, the first answer never shows up before the second prompt.
		tr := <-transcript
		if !strings.Contains(tr, "Retype new password: ") || strings.Contains(tr, strings.TrimSpace(strings.Split(tc.typed, "\n")[0])) {
			t.Fatalf("terminal transcript %q", tr)
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("typed %q: %v, want %q", tc.typed, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Authenticate(ctx, addr, "tty secret", loopback); err != nil {
			t.Fatalf("password typed at the prompt: %v", err)
		}
	}
}
