package testenv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds what the test-support packages that start real peers share: a free
// port, waiting for a port, a daemon run as a child process of the test, and reading the
// maildirs a peer delivers into.

// FreePort returns a TCP port on 127.0.0.1 that is free and reserved for this caller
// for a while, for a peer that binds it a moment later.
//
// The port lies below the kernel's ephemeral range (ip_local_port_range, from 32768 by
// default). A port from that range, once closed here, can be taken before the peer binds
// it by any process's outgoing connection (as its source port) or by a bind to port 0 —
// under a full parallel test run Postfix then failed with "bind ... Address already in
// use". Below the range only another FreePort could hand it out, and a reservation file
// under os.TempDir, shared by every test process, prevents that for reserveFor.
func FreePort(tb testing.TB) int {
	tb.Helper()
	low, high := freePortRange()
	dir := filepath.Join(os.TempDir(), "portcullis-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		tb.Fatal(err)
	}
	span := high - low + 1
	start := rand.IntN(span)
	for i := range span {
		port := low + (start+i)%span
		if reserve(dir, port) && bindable(port) {
			return port
		}
	}
	tb.Fatalf("testenv: no free port in %d-%d", low, high)
	return 0
}

// reserveFor is how long a port handed out by FreePort is not handed out again: longer
// than any test waits for its peer to bind.
const reserveFor = 15 * time.Minute

// reserve creates the reservation file of port; false when another caller holds a
// reservation younger than reserveFor.
func reserve(dir string, port int) bool {
	name := filepath.Join(dir, strconv.Itoa(port))
	for range 2 {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err == nil {
			f.Close()
			return true
		}
		fi, serr := os.Stat(name)
		if !os.IsExist(err) || serr != nil || time.Since(fi.ModTime()) < reserveFor {
			return false
		}
		os.Remove(name) // stale: its test is long over
	}
	return false
}

func bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freePortRange is the 10,000 ports below the kernel's ephemeral range (and above the
// privileged ports).
func freePortRange() (low, high int) {
	high = 32767
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				high = n - 1
			}
		}
	}
	return max(1024, high-10000), high
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
			// With nothing listening on a port of the ephemeral range, the kernel can
			// pick that very port as the source and connect the socket to itself (a TCP
			// simultaneous open): that is not the peer.
			self := c.LocalAddr().String() == c.RemoteAddr().String()
			c.Close()
			if !self {
				return nil
			}
			err = fmt.Errorf("connected to itself")
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
