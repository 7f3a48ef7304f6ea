// Package redistest starts a real redis-server (Debian's redis-server) on a loopback port
// for tests of state shared through Redis (greylisting, rate limits). The server keeps
// nothing on disk and stops when the test ends; without the program the test is skipped,
// or fails when CI=true.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	d    *testenv.Daemon
}

// Start starts a redis-server and returns its address (host:port).
func Start(t testing.TB) string { return StartServer(t).Addr }

// StartServer starts a redis-server and returns it, for tests that stop it midway.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := testenv.Program(t, "redis-server")
	port := testenv.FreePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--protected-mode", "yes", "--loglevel", "warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d, err := testenv.StartDaemon(cmd)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), d: d}
	t.Cleanup(func() { d.Stop(os.Interrupt, 5*time.Second) })
	if err := d.WaitReady(15*time.Second, 20*time.Millisecond, func() error { return ping(s.Addr) }); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// Pause stops the server (SIGSTOP): connections stay open and nothing answers, as
// with a hung server. Resume continues it.
func (s *Server) Pause() { _ = s.d.Process().Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { _ = s.d.Process().Signal(syscall.SIGCONT) }

// Kill kills the server (a crash).
func (s *Server) Kill() { s.d.Kill() }

// ping sends a RESP PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}
