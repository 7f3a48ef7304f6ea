package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds what the test-support packages that start real peers share: a free
// port, waiting for a port, a daemon run as a child process of the test, and reading the
// maildirs a peer delivers into.

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another process
// may take it before the peer binds it: starters retry when the peer fails to start.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:PORT" with a FreePort.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
}

// WaitPort waits until addr accepts TCP connections, for at most d.
func WaitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never opened: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Daemon is a peer running as a child process of the test, its standard output and
// error collected.
type Daemon struct {
	cmd  *exec.Cmd
	out  LockedBuffer
	done chan struct{}
}

// StartDaemon starts cmd (its Stdout and Stderr must be unset) and watches for its exit.
func StartDaemon(cmd *exec.Cmd) (*Daemon, error) {
	d := &Daemon{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &d.out, &d.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(d.done) }()
	return d, nil
}

// Process returns the running process.
func (d *Daemon) Process() *os.Process { return d.cmd.Process }

// Done is closed when the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Output returns what the daemon wrote to its standard output and error so far.
func (d *Daemon) Output() string { return d.out.String() }

// WaitReady calls ready every interval until it returns nil. It fails when the daemon
// exits first, or when ready still fails after timeout; the error holds the output.
func (d *Daemon) WaitReady(timeout, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-d.done:
			return fmt.Errorf("%s exited: %s\n%s", filepath.Base(d.cmd.Path), d.cmd.ProcessState, d.Output())
		default:
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s: %v\n%s", filepath.Base(d.cmd.Path), timeout, err, d.Output())
		}
		time.Sleep(interval)
	}
}

// Stop sends sig and waits for the daemon to exit; after grace it kills it (with its
// process group when it leads one). Stopping a daemon that has exited does nothing.
func (d *Daemon) Stop(sig os.Signal, grace time.Duration) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(grace):
		kill(d.cmd)
		<-d.done
	}
}

// Kill kills the daemon (a crash) and waits for it to exit.
func (d *Daemon) Kill() {
	kill(d.cmd)
	<-d.done
}

// LockedBuffer is a bytes.Buffer that other goroutines write while a test reads it: a
// daemon's output, the log of a server under test.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// MaildirFiles returns the files of the maildir dir's new/ and cur/, sorted by file name
// (the order of delivery).
func MaildirFiles(dir string) []string {
	var names []string
	for _, sub := range []string{"new", "cur"} {
		m, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		names = append(names, m...)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	return names
}

// ReadFiles returns the contents of the files, in order.
func ReadFiles(tb testing.TB, names []string) [][]byte {
	tb.Helper()
	out := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
