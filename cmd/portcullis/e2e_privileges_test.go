package main

// No root at run time (issue 15, item 6), against the real binary: started as root with
// user: nobody it binds a port below 1024, then runs as nobody (/proc/PID/status), still
// serves and delivers, and everything in the data directory is nobody's and private; the
// admin commands run as root write as nobody too. Without user: it refuses to run as
// root on a non-loopback address unless allow_root says so.

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// privateRules add a bayes instance, so that its database is in the data directory.
const privateRules = `policies:
  bayes: { bayes: {} }
rules:
  - name: bayes
    stage: data
    if: bayes.score > 0.99
    score: 1
`

// requirePrivateDataDir fails when any file or directory under dir is readable,
// writable or searchable by group or others (sockets excepted), or, with uid >= 0, not
// owned by uid and gid. It returns the number of entries seen.
func requirePrivateDataDir(t *testing.T, dir string, uid, gid int) int {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if fi.Mode()&fs.ModeSocket == 0 {
			require.Zero(t, fi.Mode().Perm()&0o077, "%s is %v: readable by others", path, fi.Mode())
		}
		if uid >= 0 {
			st := fi.Sys().(*syscall.Stat_t)
			require.Equal(t, []int{uid, gid}, []int{int(st.Uid), int(st.Gid)}, "owner of %s", path)
		}
		return nil
	}))
	return n
}

// runCommand runs a portcullis command and returns its combined output.
func runCommand(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// spamAndHam writes one message of each class for bayes train.
func spamAndHam(t *testing.T, dir string) (string, string) {
	spam, ham := filepath.Join(dir, "spam.eml"), filepath.Join(dir, "ham.eml")
	require.NoError(t, os.WriteFile(spam, []byte(e2eMessage("a@spam.example", "cheap pills", "buy cheap pills now, viagra casino")), 0o644))
	require.NoError(t, os.WriteFile(ham, []byte(e2eMessage("b@ham.example", "meeting notes", "the minutes of our meeting on tuesday")), 0o644))
	return spam, ham
}

// TestE2EDataDirPrivate: after a run that made every kind of file (queue, users, a
// mailbox with its index, Bayes database and snapshot, DKIM key, TLS certificate, rule
// file), nothing in the data directory is readable by group or others; files an older
// version left readable are tightened at start.
func TestE2EDataDirPrivate(t *testing.T) {
	dir := t.TempDir()
	dns := dnstest.New(t)
	cfg := e2eConfig(t, dir, dns, privateRules, "")
	data := filepath.Join(dir, "data")
	// What an older version left: a readable certificate, rule file and Bayes directory.
	require.NoError(t, os.MkdirAll(filepath.Join(data, "tls"), 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(data, "bayes"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(data, "old-rules.yaml"), []byte("rules: []\n"), 0o640))
	require.NoError(t, os.Chmod(data, 0o755))

	out, err := runCommand(t, "", "dkim", "keygen", "example.test", "--config", cfg)
	require.NoError(t, err, out)
	spam, ham := spamAndHam(t, dir)
	out, err = runCommand(t, "", "bayes", "train", "--spam", spam, "--ham", ham, "--config", cfg)
	require.NoError(t, err, out)

	srv := startServer(t, cfg, "mx")
	c := e2eDial(t, srv.addrs["mx"], "127.0.0.1", "client.example.net")
	_, err = e2eSend(c, "a@elsewhere.example", "postmaster@example.test", e2eMessage("a@elsewhere.example", "private", "hello"))
	require.NoError(t, err)
	require.NoError(t, c.Quit())
	waitDelivered(t, dir, 1)
	srv.kill()

	for _, f := range []string{"queue/lock", "users.db", "mail/example.test/postmaster/index.sqlite", "bayes/global.db", "tls/selfsigned.crt"} {
		require.FileExists(t, filepath.Join(data, f), "a run makes %s", f)
	}
	keys, _ := filepath.Glob(filepath.Join(data, "dkim", "example.test.*.key"))
	require.Len(t, keys, 1)
	if testing.Verbose() {
		_ = filepath.WalkDir(data, func(p string, d fs.DirEntry, _ error) error { t.Log(p); return nil })
	}
	n := requirePrivateDataDir(t, data, -1, -1)
	require.Greater(t, n, 20)
}

// freePrivilegedPort returns a loopback port below 1024 that nothing listens on.
func freePrivilegedPort(t *testing.T) int {
	for _, p := range rand.Perm(1023 - 600) {
		port := 600 + p
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port below 1024")
	return 0
}

var statusIDs = regexp.MustCompile(`(?m)^(Uid|Gid|Groups):\s*(.*)$`)

// TestE2EPrivilegeDrop: as root with user: nobody, the server binds a privileged port,
// then every uid and gid of the process is nobody's, it still serves SMTP and delivers,
// and the data directory (and what the admin commands add to it meanwhile) is nobody's.
func TestE2EPrivilegeDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the privilege drop needs root (euid %d)", os.Geteuid())
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		testenv.Unavailable(t, "no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)

	dir := t.TempDir()
	// nobody must reach the data directory and read the rule file below the test's
	// private temporary directories.
	require.NoError(t, os.Chmod(dir, 0o711))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o711))
	dns := dnstest.New(t)
	port := freePrivilegedPort(t)
	cfg := e2eConfig(t, dir, dns, privateRules, fmt.Sprintf(
		"    - { name: low, addr: \"127.0.0.1:%d\", mode: mx }\nuser: nobody\n", port))
	data := filepath.Join(dir, "data")
	// A data directory root used before: created by root, with a key made as root.
	require.NoError(t, os.MkdirAll(filepath.Join(data, "dkim"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "dkim", "old.example.s1.key"), []byte("x"), 0o644))

	srv := startServer(t, cfg, "mx", "low")
	defer srv.kill()
	require.Equal(t, fmt.Sprintf("127.0.0.1:%d", port), srv.addrs["low"])
	require.Contains(t, srv.logText(), "dropped root privileges")
	// Every thread: real, effective, saved and file-system ids are nobody's.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", srv.cmd.Process.Pid))
	require.NoError(t, err)
	require.Greater(t, len(tasks), 1)
	four := func(id string) string { return strings.TrimSpace(strings.Repeat(id+" ", 4)) }
	for _, f := range append([]string{fmt.Sprintf("/proc/%d/status", srv.cmd.Process.Pid)}, tasks...) {
		status, err := os.ReadFile(f)
		require.NoError(t, err)
		ids := map[string]string{}
		for _, m := range statusIDs.FindAllStringSubmatch(string(status), -1) {
			ids[m[1]] = strings.Join(strings.Fields(m[2]), " ")
		}
		require.Equal(t, four(nobody.Uid), ids["Uid"], "%s: uids", f)
		require.Equal(t, four(nobody.Gid), ids["Gid"], "%s: gids", f)
		require.NotContains(t, " "+ids["Groups"]+" ", " 0 ", "%s: supplementary group root", f)
	}

	// It serves on the privileged port and delivers, as nobody.
	c := e2eDial(t, srv.addrs["low"], "127.0.0.1", "client.example.net")
	_, err = e2eSend(c, "a@elsewhere.example", "postmaster@example.test", e2eMessage("a@elsewhere.example", "as-nobody", "hello"))
	require.NoError(t, err)
	require.NoError(t, c.Quit())
	got := waitDelivered(t, dir, 1)
	require.Contains(t, got[0], "Subject: as-nobody")

	// Admin commands started by root beside the running server write as nobody.
	out, err := runCommand(t, "a-long-enough-password\n", "user", "add", "bob@example.test", "--password-stdin", "--config", cfg)
	require.NoError(t, err, out)
	out, err = runCommand(t, "", "dkim", "keygen", "example.test", "--config", cfg)
	require.NoError(t, err, out)
	spam, ham := spamAndHam(t, dir)
	require.NoError(t, os.Chmod(spam, 0o644))
	out, err = runCommand(t, "", "bayes", "train", "--spam", spam, "--ham", ham, "--config", cfg)
	require.NoError(t, err, out)
	out, err = runCommand(t, "", "queue", "list", "--config", cfg)
	require.NoError(t, err, out)

	n := requirePrivateDataDir(t, data, uid, gid)
	require.Greater(t, n, 20)

	// Without user: (a server run by systemd as User=), root's admin commands become the
	// owner of the data directory.
	dir2 := t.TempDir()
	require.NoError(t, os.Chmod(dir2, 0o711))
	require.NoError(t, os.Chmod(filepath.Dir(dir2), 0o711))
	cfg2 := e2eConfig(t, dir2, dns, "rules: []\n", "")
	data2 := filepath.Join(dir2, "data")
	require.NoError(t, os.Mkdir(data2, 0o700))
	require.NoError(t, os.Chown(data2, uid, gid))
	out, err = runCommand(t, "a-long-enough-password\n", "user", "add", "carol@example.test", "--password-stdin", "--config", cfg2)
	require.NoError(t, err, out)
	requirePrivateDataDir(t, data2, uid, gid)
	require.FileExists(t, filepath.Join(data2, "users.db"))
}

// TestServeRootPolicy: as root without user:, a listener reachable from the network is
// refused with the fix named; allow_root lets it run; loopback only runs with a warning.
func TestServeRootPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "the root policy needs root (euid %d)", os.Geteuid())
	}
	dir := t.TempDir()
	dns := dnstest.New(t)
	cfg := e2eConfig(t, dir, dns, "rules: []\n", "    - { name: public, addr: \"0.0.0.0:0\", mode: mx }\n")
	out, err := runCommand(t, "", "serve", "--config", cfg)
	require.Error(t, err)
	require.Contains(t, out, "refusing to run as root with listeners reachable from the network (0.0.0.0:0)")
	require.Contains(t, out, "set user:")
	require.Contains(t, out, "allow_root: true")
	_, err = os.Stat(filepath.Join(dir, "data", "users.db"))
	require.ErrorIs(t, err, fs.ErrNotExist, "refused before opening anything")

	require.NoError(t, appendFile(cfg, "allow_root: true\n"))
	srv := startServer(t, cfg, "mx", "public")
	require.Contains(t, srv.logText(), "RUNNING AS ROOT (allow_root: true)")
	srv.kill()

	// The embedded defaults' situation: loopback only.
	dir = t.TempDir()
	cfg = e2eConfig(t, dir, dns, "rules: []\n", "")
	srv = startServer(t, cfg, "mx")
	defer srv.kill()
	require.Contains(t, srv.logText(), "RUNNING AS ROOT: acceptable for a trial on loopback only")
}
