// Package pgtest starts a real PostgreSQL server (Debian's postgresql package: initdb and
// postgres under /usr/lib/postgresql/VERSION/bin) on loopback for tests: a fresh cluster
// in a temporary directory, trust authentication on 127.0.0.1 only, fsync off, stopped
// when the test ends. PostgreSQL refuses to run as root, so under root the cluster
// belongs to the unprivileged "postgres" account (or "nobody") and the server runs with
// its credentials. Tests skip when PostgreSQL is not installed, and fail when CI=true.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// Superuser is the name of the cluster's superuser.
const Superuser = "portcullis"

// Start starts a PostgreSQL server and returns the connection string of its "postgres"
// database as the superuser: postgres://portcullis@127.0.0.1:PORT/postgres?sslmode=disable.
// The server stops and its files go when the test ends.
func Start(tb testing.TB) (dsn string) { return StartServer(tb).DSN }

// Server is a running PostgreSQL server, for tests that restart it midway.
type Server struct {
	DSN  string // as Start returns it
	tb   testing.TB
	bin  string
	cred *syscall.Credential
	dir  string
	port int
	d    *testenv.Daemon
}

// StartServer starts a PostgreSQL server (as Start) and returns it.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	bin := binDir(tb)
	cred, uid, gid := credential(tb)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		tb.Fatal(err)
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", Superuser, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	s := &Server{tb: tb, bin: bin, cred: cred, dir: dir}
	var lastErr error
	for range 5 { // the free port may be taken between probe and bind: retry
		s.port = testenv.FreePort(tb)
		if lastErr = s.run(); lastErr == nil {
			// SIGINT is PostgreSQL's fast shutdown; s.d is the latest run's.
			tb.Cleanup(func() { s.d.Stop(os.Interrupt, 20*time.Second) })
			return s
		}
	}
	tb.Fatalf("pgtest: %v", lastErr)
	return nil
}

// run starts postgres on s.port and waits until it answers.
func (s *Server) run() error {
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port),
		"-k", s.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=50")
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	d, err := testenv.StartDaemon(cmd)
	if err != nil {
		s.tb.Fatalf("pgtest: start postgres: %v", err)
	}
	s.DSN = fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", Superuser, s.port)
	if err := d.WaitReady(60*time.Second, 100*time.Millisecond, func() error { return ping(s.DSN) }); err != nil {
		d.Stop(os.Interrupt, 5*time.Second)
		return err
	}
	s.d = d
	return nil
}

// Stop shuts the server down (fast shutdown: its clients' connections are closed).
func (s *Server) Stop() { s.d.Stop(os.Interrupt, 20*time.Second) }

// Restart starts a stopped server again on the same port and data.
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.run(); err != nil {
		s.tb.Fatalf("pgtest: restart: %v", err)
	}
}

var dbSeq atomic.Int64

// NewDatabase creates a fresh, empty database on the server of dsn (as Start returned)
// and returns its connection string, so that one server serves many tests.
func NewDatabase(tb testing.TB, dsn string) string {
	tb.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
}

func ping(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.Ping(ctx)
}

// binDir finds the newest installed PostgreSQL's bin directory.
func binDir(tb testing.TB) string {
	tb.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return a > b
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	testenv.Unavailable(tb, "pgtest: PostgreSQL is not installed (Debian package postgresql; scripts/install-test-deps.sh installs it)")
	return ""
}

// credential returns the account the server runs as: the current user, or under root
// an unprivileged one.
func credential(tb testing.TB) (*syscall.Credential, int, int) {
	tb.Helper()
	if os.Geteuid() != 0 {
		return nil, os.Geteuid(), os.Getegid()
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid
	}
	testenv.Unavailable(tb, "pgtest: running as root and no unprivileged account (postgres, nobody) to run PostgreSQL")
	return nil, 0, 0
}
