package clamdtest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// EICAR is the EICAR anti-virus test string (built from two halves so that this source
// file is not itself flagged by a scanner).
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// Signature names in the database StartClamd writes. clamd reports them with the suffix
// ".UNOFFICIAL" because they come from a local database.
const (
	EICARSignature   = "Portcullis.Test.EICAR"
	ClamExeSignature = "Portcullis.Test.ClamExe"
)

// TestFilesDir is where Debian's clamav-testfiles puts clam.exe, clam.zip, clam.mail, ...
const TestFilesDir = "/usr/share/clamav-testfiles"

// Options configures StartClamd.
type Options struct {
	// StreamMaxLength is clamd's StreamMaxLength ("1M"); empty keeps clamd's default.
	StreamMaxLength string
	// MaxThreads is clamd's MaxThreads; 0 keeps clamd's default (10).
	MaxThreads int
	// Config holds extra clamd.conf lines.
	Config []string
}

// Daemon is a running clamd started by StartClamd.
type Daemon struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	port    int
	sock    string
	mu      sync.Mutex
	d       *testenv.Daemon
	stopped bool
}

// Database returns the local signature database files: an .ndb body signature for the
// EICAR string (so it is found in any file type, also after MIME and archive decoding) and
// an .hdb hash signature (md5:size:name) for clam.exe.
func Database() (map[string][]byte, error) {
	exe, err := os.ReadFile(filepath.Join(TestFilesDir, "clam.exe"))
	if err != nil {
		return nil, fmt.Errorf("clamdtest: %w", err)
	}
	sum := md5.Sum(exe)
	return map[string][]byte{
		// name:target type (0 = any):offset (* = anywhere):hex body
		"portcullis.ndb": fmt.Appendf(nil, "%s:0:*:%s\n", EICARSignature, hex.EncodeToString([]byte(EICAR))),
		"portcullis.hdb": fmt.Appendf(nil, "%s:%d:%s\n", hex.EncodeToString(sum[:]), len(exe), ClamExeSignature),
	}, nil
}

// StartClamd writes a signature database and a clamd.conf into a new temporary directory,
// starts clamd on a free loopback TCP port and a unix socket, waits until it answers PONG
// and stops it when the test ends.
func StartClamd(t testing.TB, opts Options) *Daemon {
	t.Helper()
	bin := testenv.Program(t, "clamd")
	if _, err := os.Stat(filepath.Join(TestFilesDir, "clam.exe")); err != nil {
		testenv.Unavailable(t, "clamdtest: %s missing (Debian package clamav-testfiles)", TestFilesDir)
	}
	// A unix socket path must fit in 108 bytes: t.TempDir() paths can be too long.
	dir, err := os.MkdirTemp("", "clamd")
	if err != nil {
		t.Fatalf("clamdtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	db, err := Database()
	if err != nil {
		t.Fatal(err)
	}
	dbDir := filepath.Join(dir, "db")
	if err := os.Mkdir(dbDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range db {
		if err := os.WriteFile(filepath.Join(dbDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{t: t, bin: bin, dir: dir, conf: filepath.Join(dir, "clamd.conf"), sock: filepath.Join(dir, "clamd.sock")}
	var lastErr error
	for range 3 { // the free port can be taken between probing and clamd's bind
		d.port = testenv.FreePort(t)
		conf := []string{
			"DatabaseDirectory " + dbDir,
			"TemporaryDirectory " + tmp,
			"TCPSocket " + strconv.Itoa(d.port),
			"TCPAddr 127.0.0.1",
			"LocalSocket " + d.sock,
			"Foreground yes",
			"LogFile " + filepath.Join(dir, "clamd.log"),
			"LogTime yes",
			"PidFile " + filepath.Join(dir, "clamd.pid"),
			// Running as root (containers, CI) needs no User line: clamd keeps the
			// current user when User is unset.
		}
		if opts.StreamMaxLength != "" {
			conf = append(conf, "StreamMaxLength "+opts.StreamMaxLength)
		}
		if opts.MaxThreads > 0 {
			conf = append(conf, "MaxThreads "+strconv.Itoa(opts.MaxThreads))
		}
		conf = append(conf, opts.Config...)
		if err := os.WriteFile(d.conf, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if lastErr = d.start(); lastErr == nil {
			t.Cleanup(d.Stop)
			return d
		}
	}
	t.Fatalf("clamdtest: %v\n%s", lastErr, d.Log())
	return nil
}

func (d *Daemon) start() error {
	_ = os.Remove(d.sock)
	cmd := exec.Command(d.bin, "-c", d.conf)
	setPdeathsig(cmd)
	p, err := testenv.StartDaemon(cmd)
	if err != nil {
		return fmt.Errorf("start clamd: %w", err)
	}
	d.mu.Lock()
	d.d, d.stopped = p, false
	d.mu.Unlock()
	err = p.WaitReady(60*time.Second, 20*time.Millisecond, func() error {
		if err := Ping(d.TCPAddr(), time.Second); err != nil {
			return err
		}
		return Ping(d.UnixAddr(), time.Second)
	})
	if err != nil {
		d.Kill()
	}
	return err
}

// TCPAddr returns the daemon's TCP address as "tcp:127.0.0.1:PORT".
func (d *Daemon) TCPAddr() string { return "tcp:127.0.0.1:" + strconv.Itoa(d.port) }

// UnixAddr returns the daemon's socket as "unix:/path".
func (d *Daemon) UnixAddr() string { return "unix:" + d.sock }

// Port returns the TCP port.
func (d *Daemon) Port() int { return d.port }

// SocketPath returns the unix socket's path.
func (d *Daemon) SocketPath() string { return d.sock }

// Dir returns the daemon's temporary directory (config, database, log).
func (d *Daemon) Dir() string { return d.dir }

// Log returns clamd's log file.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "clamd.log"))
	return string(b)
}

// Kill kills clamd with SIGKILL (a crash: connections drop, the socket file stays) and
// waits for it to exit.
func (d *Daemon) Kill() {
	if p, _ := d.take(); p != nil {
		p.Kill()
	}
}

// Stop stops clamd (SIGTERM, then SIGKILL after 10s). It runs at the end of the test.
func (d *Daemon) Stop() {
	if p, stopped := d.take(); p != nil && !stopped {
		p.Stop(os.Interrupt, 10*time.Second)
	}
}

// take marks the daemon stopped and returns its process (nil when none was started)
// and whether it was stopped already.
func (d *Daemon) take() (p *testenv.Daemon, stopped bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, stopped, d.stopped = d.d, d.stopped, true
	return p, stopped
}

// Restart starts clamd again after Kill or Stop, on the same port and socket.
func (d *Daemon) Restart() {
	d.t.Helper()
	if err := d.start(); err != nil {
		d.t.Fatalf("clamdtest: restart: %v\n%s", err, d.Log())
	}
}

// Ping sends zPING to addr ("tcp:host:port" or "unix:/path") and checks the PONG. It is a
// minimal client of its own so that the helper does not depend on the code under test.
func Ping(addr string, timeout time.Duration) error {
	network, address := "tcp", strings.TrimPrefix(addr, "tcp:")
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	c, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, _ := readFull(c, buf)
	if string(buf[:n]) != "PONG\x00" {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}

func readFull(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
