// Package postfixtest runs real Postfix programs on loopback for tests of outbound SMTP:
// a private Postfix instance acting as a remote mail exchanger (Start), and Postfix's
// smtp-sink for failure injection (StartSink). Both come from the Debian package postfix;
// when it is missing the test is skipped, or fails when CI=true.
//
// The Postfix instance delivers the virtual mailbox domain it is given into maildirs
// under its directory, rejects unknown users with 550 5.1.1, answers what
// Config.Access says for chosen recipients (450 4.2.0 for a deferral), and offers
// STARTTLS with a self-signed certificate when Config.TLS is set.
//
// `postfix -c DIR` only starts an instance whose DIR is listed in
// alternate_config_directories of /etc/postfix/main.cf; Start adds it there for the
// moment of starting (under a lock, restoring the file afterwards: the running instance
// no longer needs it) and stops the instance when the test ends.
package postfixtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// Config describes the Postfix instance.
type Config struct {
	// Addr is the listening address. [127.0.0.1 and a free port]
	Addr string
	// Hostname is its myhostname and certificate name. [mx.remote.test]
	Hostname string
	// Domain is the virtual mailbox domain it accepts. [remote.test]
	Domain string
	// Users are the local parts (or full addresses in Domain) that have a mailbox.
	Users []string
	// Access maps a recipient address to the reply Postfix gives it at RCPT, e.g.
	// "450 4.2.0 try again later" (check_recipient_access).
	Access map[string]string
	// TLS offers STARTTLS with a self-signed certificate.
	TLS bool
	// MessageSizeLimit is message_size_limit (announced in SIZE). [10240000]
	MessageSizeLimit int
	// MainCF is merged into main.cf: a parameter set there replaces the one above
	// (e.g. smtpd_recipient_restrictions with a check_policy_service), others are
	// added (e.g. smtpd_milters).
	MainCF string
}

// Postfix is a running private Postfix instance.
type Postfix struct {
	Dir  string // config in etc/, queue in spool/, mail in vmail/, log in maillog
	Addr string
	// CertPEM is the self-signed certificate offered with STARTTLS (Config.TLS).
	CertPEM []byte
	cfg     Config
	stopped bool
}

// Start starts a Postfix instance and stops it when the test ends.
func Start(t testing.TB, cfg Config) *Postfix {
	t.Helper()
	postfix := testenv.Program(t, "postfix")
	if os.Getuid() != 0 {
		testenv.Unavailable(t, "postfixtest: a private Postfix instance needs root")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.remote.test"
	}
	if cfg.Domain == "" {
		cfg.Domain = "remote.test"
	}
	if cfg.Addr == "" {
		cfg.Addr = testenv.FreeAddr(t)
	}
	if cfg.MessageSizeLimit == 0 {
		cfg.MessageSizeLimit = 10240000
	}
	dir, err := os.MkdirTemp("", "postfixtest-")
	if err != nil {
		t.Fatal(err)
	}
	// The postfix user must traverse the tree.
	os.Chmod(dir, 0o755)
	p := &Postfix{Dir: dir, Addr: cfg.Addr, cfg: cfg}
	t.Cleanup(func() {
		// A failed test shows what Postfix logged: its side of a wrong or missing reply
		// is there and nowhere else.
		if t.Failed() {
			t.Logf("postfixtest: maillog of %s:\n%s", cfg.Addr, p.Log())
			_, port, _ := net.SplitHostPort(cfg.Addr)
			out, _ := exec.Command("ss", "-tanp", "sport = :"+port+" or dport = :"+port).CombinedOutput()
			t.Logf("postfixtest: sockets on port %s:\n%s", port, out)
			t.Logf("postfixtest: processes:\n%s", p.diagnose())
		}
		p.Stop()
		os.RemoveAll(dir)
	})
	for _, d := range []string{"etc", "spool", "lib", "vmail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chown(filepath.Join(dir, "lib"), "postfix")
	os.Chown(filepath.Join(dir, "vmail"), 65534, 65534)

	var vmb, access bytes.Buffer
	for _, u := range cfg.Users {
		local := strings.TrimSuffix(u, "@"+cfg.Domain)
		fmt.Fprintf(&vmb, "%s@%s %s/Maildir/\n", local, cfg.Domain, local)
	}
	for rcpt, reply := range cfg.Access {
		fmt.Fprintf(&access, "%s %s\n", rcpt, reply)
	}
	write(t, filepath.Join(dir, "etc", "vmailbox"), vmb.Bytes())
	write(t, filepath.Join(dir, "etc", "access"), access.Bytes())
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	mainCF := fmt.Sprintf(`# written by postfixtest
compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/lib
mail_owner = postfix
setgid_group = postdrop
myhostname = %[2]s
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = %[3]s
inet_protocols = all
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
virtual_mailbox_domains = %[4]s
virtual_mailbox_base = %[1]s/vmail
virtual_mailbox_maps = texthash:%[1]s/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
smtpd_recipient_restrictions = check_recipient_access texthash:%[1]s/etc/access, permit_mynetworks, reject_unauth_destination
message_size_limit = %[5]d
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
maillog_file = %[1]s/maillog
maillog_file_prefixes = /tmp
`, dir, cfg.Hostname, host, cfg.Domain, cfg.MessageSizeLimit)
	if cfg.TLS {
		cert, key := SelfSigned(t, cfg.Hostname)
		p.CertPEM = cert
		write(t, filepath.Join(dir, "etc", "cert.pem"), cert)
		write(t, filepath.Join(dir, "etc", "key.pem"), key)
		mainCF += fmt.Sprintf("smtpd_tls_security_level = may\nsmtpd_tls_cert_file = %[1]s/etc/cert.pem\nsmtpd_tls_key_file = %[1]s/etc/key.pem\nsmtpd_tls_received_header = yes\n", dir)
	}
	mainCF = mergeMainCF(mainCF, cfg.MainCF)
	write(t, filepath.Join(dir, "etc", "main.cf"), []byte(mainCF))
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		master, err = os.ReadFile("/etc/postfix/master.cf")
	}
	if err != nil {
		t.Fatalf("postfixtest: no master.cf to start from: %v", err)
	}
	var mcf bytes.Buffer
	for _, l := range strings.Split(string(master), "\n") {
		if f := strings.Fields(l); len(f) >= 8 && f[0] == "smtp" && f[1] == "inet" {
			l = fmt.Sprintf("%s inet n - n - - smtpd", net.JoinHostPort(host, port))
		}
		mcf.WriteString(l + "\n")
	}
	write(t, filepath.Join(dir, "etc", "master.cf"), mcf.Bytes())

	if err := withAlternateConfig(filepath.Join(dir, "etc"), func() error {
		out, err := exec.Command(postfix, "-c", filepath.Join(dir, "etc"), "start").CombinedOutput()
		if err != nil {
			return fmt.Errorf("postfix start: %v\n%s", err, out)
		}
		if bytes.Contains(out, []byte("overriding earlier entry")) {
			// See mergeMainCF: such warnings can hang the instance.
			return fmt.Errorf("main.cf sets a parameter twice:\n%s", out)
		}
		return nil
	}); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	if err := testenv.WaitPort(cfg.Addr, 15*time.Second); err != nil {
		t.Fatalf("postfixtest: %v\n%s", err, p.Log())
	}
	return p
}

// withAlternateConfig lists dir in alternate_config_directories of /etc/postfix/main.cf
// while fn runs, under an exclusive lock, and restores the file afterwards.
func withAlternateConfig(dir string, fn func() error) error {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "portcullis-postfix-main-cf.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	const main = "/etc/postfix/main.cf"
	orig, err := os.ReadFile(main)
	existed := err == nil
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	// Replace the parameter rather than add a second one (see mergeMainCF), keeping the
	// directories listed there that still exist (a killed test leaves its own behind).
	var add bytes.Buffer
	dirs := []string{dir}
	for _, l := range strings.Split(string(orig), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "alternate_config_directories"); ok {
			if v, ok := strings.CutPrefix(strings.TrimSpace(v), "="); ok {
				for _, d := range strings.Fields(v) {
					if _, err := os.Stat(d); err == nil && !slices.Contains(dirs, d) {
						dirs = append(dirs, d)
					}
				}
				continue
			}
		}
		if l != "" {
			add.WriteString(l + "\n")
		}
	}
	fmt.Fprintf(&add, "alternate_config_directories = %s\n", strings.Join(dirs, " "))
	if err := os.WriteFile(main, add.Bytes(), 0o644); err != nil {
		return err
	}
	defer func() {
		if existed {
			os.WriteFile(main, orig, 0o644)
		} else {
			os.Remove(main)
		}
	}()
	return fn()
}

// Stop stops the instance (a remote that goes away). Stopping twice is harmless.
func (p *Postfix) Stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	b, err := os.ReadFile(filepath.Join(p.Dir, "spool", "pid", "master.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// Maildir returns the maildir of user (local part or address in the domain).
func (p *Postfix) Maildir(user string) string {
	return filepath.Join(p.Dir, "vmail", strings.TrimSuffix(user, "@"+p.cfg.Domain), "Maildir")
}

// Messages returns the messages delivered to user so far, oldest first.
func (p *Postfix) Messages(t testing.TB, user string) [][]byte {
	t.Helper()
	return testenv.ReadFiles(t, testenv.MaildirFiles(p.Maildir(user)))
}

// WaitMessages waits until user has n messages (Postfix delivers from its queue
// shortly after accepting) and returns them.
func (p *Postfix) WaitMessages(t testing.TB, user string, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := p.Messages(t, user)
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: %s has %d messages, want %d\n%s", user, len(m), n, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns Postfix's log so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// Sink is a running smtp-sink.
type Sink struct {
	Addr string
	Dir  string // dumps of received messages (one file each)
	d    *testenv.Daemon
}

// StartSink runs `smtp-sink [args] ADDR 100` (ADDR "127.0.0.1:PORT"; "" picks a free
// port) with every message dumped into a file under Sink.Dir, and stops it when the test
// ends. args inject failures: "-r RCPT" answers 4xx to every RCPT, "-f DATA" 5xx to DATA,
// "-q ." drops the connection after the message without a reply, "-Q CONNECT" greets
// with 421, "-b"/"-B" set the 4xx/5xx reply texts; see smtp-sink(1).
func StartSink(t testing.TB, addr string, args ...string) *Sink {
	t.Helper()
	return startSink(t, addr, true, args)
}

// StartSinkDiscard is StartSink without the dumps: messages are counted by nothing and
// stored nowhere (for benchmarks).
func StartSinkDiscard(t testing.TB, addr string, args ...string) *Sink {
	t.Helper()
	return startSink(t, addr, false, args)
}

func startSink(t testing.TB, addr string, dump bool, args []string) *Sink {
	t.Helper()
	bin := testenv.Program(t, "smtp-sink")
	if addr == "" {
		addr = testenv.FreeAddr(t)
	}
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	t.Cleanup(func() { os.RemoveAll(dir) })
	var a []string
	if dump {
		a = []string{"-d", dir + "/%M."}
	}
	if os.Getuid() == 0 {
		a = append(a, "-u", "nobody")
	}
	a = append(append(a, args...), addr, "100")
	s := &Sink{Addr: addr, Dir: dir}
	if s.d, err = testenv.StartDaemon(exec.Command(bin, a...)); err != nil {
		t.Fatalf("postfixtest: smtp-sink: %v", err)
	}
	t.Cleanup(s.Stop)
	if err := testenv.WaitPort(addr, 10*time.Second); err != nil {
		t.Fatalf("postfixtest: smtp-sink %v: %v\n%s", a, err, s.d.Output())
	}
	return s
}

// Stop stops the sink (a remote that goes away).
func (s *Sink) Stop() { s.d.Kill() }

// Messages returns the dumps of the messages received so far: smtp-sink's X-Mail-Args
// and X-Rcpt-Args header lines followed by the message.
func (s *Sink) Messages(t testing.TB) [][]byte {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(s.Dir, "*"))
	slices.Sort(names)
	return testenv.ReadFiles(t, names)
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func chown(path, user string) {
	out, err := exec.Command("id", "-u", user).Output()
	if err != nil {
		return
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	os.Chown(path, uid, -1)
}

// SelfSigned returns a certificate and key in PEM for name.
func SelfSigned(t testing.TB, name string) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// diagnose describes the instance's processes: what each waits in and its sockets.
func (p *Postfix) diagnose() string {
	b, err := os.ReadFile(filepath.Join(p.Dir, "spool", "pid", "master.pid"))
	if err != nil {
		return err.Error()
	}
	master := strings.TrimSpace(string(b))
	ss, _ := exec.Command("ss", "-tanxp").CombinedOutput()
	var out strings.Builder
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range procs {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		pid := filepath.Base(filepath.Dir(st))
		if len(f) < 2 || (f[1] != master && pid != master) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		wchan, _ := os.ReadFile(filepath.Join("/proc", pid, "wchan"))
		sc, _ := os.ReadFile(filepath.Join("/proc", pid, "syscall"))
		fmt.Fprintf(&out, "pid %s: %s wchan=%s syscall=%s\n", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}), wchan, strings.TrimSpace(string(sc)))
		for _, l := range strings.Split(string(ss), "\n") {
			if strings.Contains(l, "pid="+pid+",") {
				fmt.Fprintf(&out, "    %s\n", l)
			}
		}
	}
	return out.String()
}

// mergeMainCF sets each parameter of extra in base: in place when base sets it, at the
// end otherwise. A parameter set twice makes every Postfix program warn "overriding
// earlier entry" at start, into the postlog socket (a datagram queue of 10 on Linux);
// under load the queue filled before postlogd ran, postlogd then blocked sending its own
// warning to itself, and with it every process that logs — the instance hung at the
// first reply that had to log (seen as intermittent minute-long hangs in full runs).
func mergeMainCF(base, extra string) string {
	params := func(cf string) (names []string, lines map[string]string) {
		lines = map[string]string{}
		var cur string
		for _, l := range strings.Split(cf, "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if (l[0] == ' ' || l[0] == '\t') && cur != "" { // a continuation line
				lines[cur] += "\n" + l
				continue
			}
			name, _, _ := strings.Cut(l, "=")
			cur = strings.TrimSpace(name)
			if _, seen := lines[cur]; !seen {
				names = append(names, cur)
			}
			lines[cur] = l
		}
		return names, lines
	}
	baseNames, baseLines := params(base)
	extraNames, extraLines := params(extra)
	var out strings.Builder
	out.WriteString("# written by postfixtest\n")
	for _, n := range baseNames {
		if l, ok := extraLines[n]; ok {
			out.WriteString(l + "\n")
			continue
		}
		out.WriteString(baseLines[n] + "\n")
	}
	for _, n := range extraNames {
		if _, ok := baseLines[n]; !ok {
			out.WriteString(extraLines[n] + "\n")
		}
	}
	return out.String()
}
