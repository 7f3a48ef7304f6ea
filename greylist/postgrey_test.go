package greylist_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mail/portcullis/greylist"
	"github.com/portcullis-mail/portcullis/internal/redistest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/policy"
)

// attempt is one delivery attempt at a time in seconds after t0.
type attempt struct {
	at           int64
	ip, name     string
	sender, rcpt string
}

const t0 = 1_700_000_000

// scenario is a sequence of attempts with an increasing clock that exercises postgrey's
// rules: a new triplet, an early retry, the retry after the delay (X-Greylist), a known
// triplet, the /24 and /64 client networks, sender normalisation (+extension, VERP
// digits, BATV both ways, case), the retry window, and auto-allowing a client after 5
// passes counted at most once an hour.
func scenario() []attempt {
	var s []attempt
	add := func(at int64, ip, sender, rcpt string) {
		s = append(s, attempt{at: at, ip: ip, name: "unknown", sender: sender, rcpt: rcpt})
	}
	add(0, "192.0.2.10", "a@x.example", "u@y.example")
	add(100, "192.0.2.10", "a@x.example", "u@y.example")
	add(299, "192.0.2.11", "a@x.example", "U@Y.example")
	add(300, "192.0.2.10", "a@x.example", "u@y.example")
	add(400, "192.0.2.99", "A@X.example", "u@y.example")
	add(401, "192.0.3.10", "a@x.example", "u@y.example")
	add(500, "192.0.2.10", "list-123-bounces+u=y.example@lists.example", "u@y.example")
	add(900, "192.0.2.10", "list-456-bounces+v=y.example@lists.example", "u@y.example")
	add(901, "192.0.2.10", "list123-bounces@lists.example", "u@y.example")
	add(1000, "198.51.100.1", "prvs=0123456789=user@b.example", "u@y.example")
	add(1400, "198.51.100.1", "prvs=9876543210=user@b.example", "u@y.example")
	add(1401, "198.51.100.1", "prvs=user=0123456789@b.example", "u@y.example")
	add(1500, "2001:db8:1:2::5", "a@x.example", "u@y.example")
	add(1900, "2001:db8:1:2:ffff::1", "a@x.example", "u@y.example")
	add(1901, "2001:db8:1:3::5", "a@x.example", "u@y.example")
	add(2000, "203.0.113.7", "late@x.example", "u@y.example")
	add(2000+2*86400+1, "203.0.113.7", "late@x.example", "u@y.example")
	add(2000+2*86400+400, "203.0.113.7", "late@x.example", "u@y.example")
	// Auto-allow: 198.51.100.200 passes a new triplet six times, twice within one hour.
	base := int64(300000)
	for i := int64(0); i < 6; i++ {
		at := base + i*3600
		if i == 3 {
			at = base + 2*3600 + 1000 // the second pass within the hour of the third
		}
		r := "r" + strconv.FormatInt(i, 10) + "@y.example"
		add(at, "198.51.100.200", "s@x.example", r)
		add(at+301, "198.51.100.200", "s@x.example", r)
	}
	add(base+10*3600, "198.51.100.200", "new@x.example", "new@y.example")
	add(base+11*3600, "198.51.100.201", "new@x.example", "new2@y.example")
	add(base+11*3600+10, "198.51.100.200", "other@x.example", "other@y.example")
	return s
}

// outcome is what both sides said: "greylist N" (N seconds left), "pass-header" (first
// pass: the X-Greylist header), "pass".
func ours(t *testing.T, p *greylist.Policy, a attempt) string {
	t.Helper()
	c := policy.Conn{IP: netip.MustParseAddr(a.ip)}
	d, err := p.Check(context.Background(), &c, a.sender, a.rcpt, time.Unix(t0+a.at, 0))
	if err != nil {
		t.Fatalf("%+v: %v", a, err)
	}
	switch {
	case d.Greylisted:
		return "greylist " + strconv.FormatInt(d.DelayLeft, 10)
	case d.Passed:
		return "pass-header"
	}
	return "pass"
}

// postgrey runs Debian's postgrey on a loopback port with an empty allow-list, the
// greylist text "%s" (the seconds left) and its policy-test clock: the attribute
// policy_test_time, which postgrey takes as the time of the request (the attribute its
// own policy-test script sends), so that days pass without waiting.
type postgrey struct {
	c  net.Conn
	br *bufio.Reader
}

func startPostgrey(t *testing.T) *postgrey {
	bin := testenv.Program(t, "postgrey")
	if os.Getuid() != 0 {
		testenv.Unavailable(t, "postgrey drops privileges to its user: needs root")
	}
	u, err := user.Lookup("postgrey")
	if err != nil {
		testenv.Unavailable(t, "no postgrey user: %v", err)
	}
	dir, err := os.MkdirTemp("", "postgrey-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	os.Chmod(dir, 0o755)
	os.Chown(dir, uid, gid)
	for _, f := range []string{"clients", "recipients"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, "--inet="+addr, "--dbdir="+dir, "--greylist-text=%s",
		"--whitelist-clients="+filepath.Join(dir, "clients"), "--whitelist-recipients="+filepath.Join(dir, "recipients"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d, err := testenv.StartDaemon(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(syscall.SIGTERM, 5*time.Second) })
	if err := d.WaitReady(30*time.Second, 50*time.Millisecond, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &postgrey{c: c, br: bufio.NewReader(c)}
}

func (pg *postgrey) ask(t *testing.T, a attempt) string {
	t.Helper()
	pg.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(pg.c, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=%s\nsender=%s\nrecipient=%s\npolicy_test_time=%d\n\n",
		a.ip, a.name, a.sender, a.rcpt, t0+a.at)
	var action string
	for {
		l, err := pg.br.ReadString('\n')
		if err != nil {
			t.Fatalf("postgrey: %v", err)
		}
		l = strings.TrimSpace(l)
		if l == "" {
			break
		}
		action, _ = strings.CutPrefix(l, "action=")
	}
	switch {
	case strings.HasPrefix(action, "DEFER_IF_PERMIT "):
		return "greylist " + strings.TrimPrefix(action, "DEFER_IF_PERMIT ")
	case strings.HasPrefix(action, "PREPEND X-Greylist:"):
		return "pass-header"
	case action == "DUNNO":
		return "pass"
	}
	t.Fatalf("postgrey answered %q", action)
	return ""
}

// TestPostgreyOracle runs the scenario through postgrey and through the policy on each
// store (memory, SQLite, Redis): every attempt must get the same outcome, seconds left
// included.
func TestPostgreyOracle(t *testing.T) {
	pg := startPostgrey(t)
	sc := scenario()
	want := make([]string, len(sc))
	for i, a := range sc {
		want[i] = pg.ask(t, a)
	}
	t.Logf("postgrey: %q", want)
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			p, err := greylist.New(greylist.Config{}, greylist.Deps{Store: store})
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range sc {
				if got := ours(t, p, a); got != want[i] {
					t.Errorf("attempt %d %+v: postgrey %q, portcullis %q", i, a, want[i], got)
				}
			}
		})
	}
}

func stores(t *testing.T) map[string]greylist.Store {
	sq, err := greylist.OpenSQLite(filepath.Join(t.TempDir(), "greylist.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { c.Close() })
	return map[string]greylist.Store{"memory": greylist.NewMemoryStore(), "sqlite": sq, "redis": greylist.NewRedisStore(c, "")}
}
