package smtpd_test

// Connection pools per listener, the whole-line and HELO deadlines, and what a client's
// junk can make the server say.

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// Each listener has its own pool: the MX full (from many addresses, so the per-address
// limit is not what stops them) does not lock out submission.
func TestListenerPools(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) {
		c.Listeners[0].MaxConnections = 3
		c.Listeners[1].MaxConnections = 2
	})
	for ip := byte(10); ip < 13; ip++ {
		dialFrom(t, ts.addr("mx"), ip).Expect(t, "", 220)
	}
	r := dialFrom(t, ts.addr("mx"), 13).Expect(t, "", 421)
	if r.Enhanced() != "4.7.0" || !strings.Contains(r.Text(), "listener limit") {
		t.Errorf("over the MX pool: %v", r)
	}
	a := dial(t, ts.addr("submission"))
	dial(t, ts.addr("submission"))
	if r := dialFrom(t, ts.addr("submission"), 14).Expect(t, "", 421); !strings.Contains(r.Text(), "listener limit") {
		t.Errorf("over the submission pool: %v", r)
	}
	a.Expect(t, "QUIT", 221)
	waitFor(t, "a free submission slot", func() bool {
		c, err := smtptest.Dial(ts.addr("submission"))
		if err != nil {
			return false
		}
		defer c.Close()
		r, err := c.ReadReply()
		return err == nil && r.Code == 220
	})
}

// The per-address limit counts per listener: a client at its limit on the MX can still
// submit.
func TestPerAddressLimitPerListener(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) { c.MaxConnectionsPerIP = 2 })
	dialFrom(t, ts.addr("mx"), 20).Expect(t, "", 220)
	dialFrom(t, ts.addr("mx"), 20).Expect(t, "", 220)
	if r := dialFrom(t, ts.addr("mx"), 20).Expect(t, "", 421); !strings.Contains(r.Text(), "per-address limit") {
		t.Errorf("third from one address: %v", r)
	}
	dialFrom(t, ts.addr("submission"), 20).Expect(t, "", 220)
}

func TestListenerDefaults(t *testing.T) {
	cfg := smtpd.Config{
		MaxConnectionsPerIP: 7,
		Listeners: []smtpd.ListenerConfig{
			{Name: "mx", Mode: smtpd.ModeMX},
			{Name: "sub", Mode: smtpd.ModeSubmission},
			{Name: "lmtp", Mode: smtpd.ModeLMTP, MaxConnections: 40},
			{Name: "mx2", Mode: smtpd.ModeMX, MaxConnections: 5, MaxConnectionsPerIP: 1},
		},
	}.Defaults()
	got := []int{}
	for _, l := range cfg.Listeners {
		got = append(got, l.MaxConnections, l.MaxConnectionsPerIP)
	}
	want := []int{300, 7, 100, 7, 40, 40, 5, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("listener pools %v, want %v", got, want)
		}
	}
	if cfg.MaxConnections != 300+100+40+5 {
		t.Errorf("total %d, want the sum of the pools", cfg.MaxConnections)
	}
	if cfg.HeloTimeout != 30*time.Second {
		t.Errorf("helo_timeout %v", cfg.HeloTimeout)
	}
}

// readUntilClosed reads replies until the server closes; it returns them and how long
// that took.
func readUntilClosed(t *testing.T, c *smtptest.Conn, limit time.Duration) ([]smtptest.Reply, time.Duration) {
	t.Helper()
	start := time.Now()
	c.Timeout = limit
	var rs []smtptest.Reply
	for {
		r, err := c.ReadReply()
		if err != nil {
			if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "connection reset") {
				t.Fatalf("after %v: %v (replies %v)", time.Since(start), err, rs)
			}
			return rs, time.Since(start)
		}
		rs = append(rs, r)
	}
}

// A command line dripped a byte at a time must still be complete within command_timeout
// of the previous reply. go-smtp's reader hands over the partial line when the deadline
// passes; it used to be executed ("NOOP" got 250 and a fresh deadline, for ever).
func TestDripFedCommandCut(t *testing.T) {
	const timeout = 400 * time.Millisecond
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) { c.CommandTimeout = timeout })
	for _, partial := range []string{"NOOP", "MAIL FROM:<a@example.net>", "junk junk"} {
		c := dial(t, ts.addr("mx"))
		c.Expect(t, "EHLO client.example.net", 250)
		start := time.Now()
		nc := c.NetConn()
		go func() {
			// Drip the partial line, then keep dripping spaces well past the deadline.
			for i := 0; time.Since(start) < 10*timeout; i++ {
				b := " "
				if i < len(partial) {
					b = partial[i : i+1]
				}
				if _, err := nc.Write([]byte(b)); err != nil {
					return
				}
				time.Sleep(timeout / 20)
			}
		}()
		rs, took := readUntilClosed(t, c, 15*timeout)
		// Closed while the client was still dripping: a deadline extended by the bytes
		// would keep it open for the whole 10 × timeout. The margin is for a loaded machine.
		if took > 5*timeout {
			t.Errorf("%q: closed after %v, want about %v", partial, took, timeout)
		}
		if len(rs) != 1 || rs[0].Code != 421 || rs[0].Enhanced() != "4.4.2" {
			t.Errorf("%q: replies %v, want one 421 4.4.2 (the partial line never executed)", partial, rs)
		}
	}
	// Inside TLS the partial line is not answered at all: the session just ends.
	c := dial(t, ts.addr("submission"))
	c.Expect(t, "EHLO client.example.net", 250)
	if err := c.StartTLS(); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, "EHLO client.example.net", 250)
	if err := c.Send("NOO"); err != nil {
		t.Fatal(err)
	}
	rs, took := readUntilClosed(t, c, 10*timeout)
	if len(rs) != 0 || took > 5*timeout {
		t.Errorf("inside TLS: %v after %v, want no reply and the end of the session", rs, took)
	}
	if n := ts.q.count(); n != 0 {
		t.Errorf("queued %d", n)
	}
}

// Before HELO/EHLO the bound is helo_timeout from the greeting, and commands that go-smtp
// answers itself (NOOP) do not extend it.
func TestHeloTimeout(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) {
		c.HeloTimeout = 300 * time.Millisecond
		c.CommandTimeout = 5 * time.Second
	})
	c := dial(t, ts.addr("mx"))
	rs, took := readUntilClosed(t, c, 3*time.Second)
	if took > time.Second || len(rs) != 1 || rs[0].Code != 421 {
		t.Errorf("silent client: %v after %v", rs, took)
	}

	c = dial(t, ts.addr("mx"))
	start := time.Now()
	for time.Since(start) < time.Second {
		if _, err := c.Cmd("NOOP"); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("NOOPs kept a session without HELO for %v", took)
	}

	// After EHLO, command_timeout applies.
	c = dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	time.Sleep(500 * time.Millisecond)
	c.Expect(t, "NOOP", 250)

	// The TLS handshake of an implicit-TLS port is bounded by it too.
	nc, err := net.Dial("tcp", ts.addr("submissions"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	start = time.Now()
	_, err = nc.Read(make([]byte, 1))
	if err == nil || time.Since(start) > time.Second {
		t.Errorf("silent TLS client: %v after %v", err, time.Since(start))
	}
}

// A NUL, a bare CR or another control character in EHLO is never echoed: the first
// EHLO is refused with 501, a second one ends the session without a reply.
func TestHeloControlCharacters(t *testing.T) {
	ts := start(t, nil)
	for _, name := range []string{"a\x00b.example.net", "x.example.net\rMAIL", "esc\x1b[31m.example", "caf\xc3\xa9.example"} {
		c := dial(t, ts.addr("mx"))
		if err := c.Send("EHLO " + name + "\r\n"); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadReply()
		if err != nil || r.Code != 501 || r.Enhanced() != "5.5.2" {
			t.Errorf("EHLO %q: %v %v", name, r, err)
		}
		for _, l := range r.Lines {
			for i := 0; i < len(l); i++ {
				if l[i] < ' ' || l[i] >= 0x7f {
					t.Errorf("EHLO %q echoed: %q", name, l)
				}
			}
		}
		c.Expect(t, "EHLO client.example.net", 250)
		c.Expect(t, "MAIL FROM:<a@example.net>", 250)
		if err := c.Send("EHLO " + name + "\r\n"); err != nil {
			t.Fatal(err)
		}
		rs, _ := readUntilClosed(t, c, 5*time.Second)
		if len(rs) != 0 {
			t.Errorf("second EHLO %q: replies %v, want none and the end of the session", name, rs)
		}
	}
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "HELO a\x00b", 501)
}

// A client's syntax errors get 5xx replies that say so, never a temporary failure of
// the server.
func TestAuthSyntaxErrors(t *testing.T) {
	ts := start(t, nil)
	c, err := smtptest.DialTLS(ts.addr("submissions"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.example.net", 250)
	noNULs := base64.StdEncoding.EncodeToString([]byte("alice@example.test secret"))
	if r := c.Expect(t, "AUTH PLAIN "+noNULs, 501); r.Enhanced() != "5.5.2" {
		t.Errorf("PLAIN without NULs: %v", r)
	}
	c.Expect(t, "AUTH PLAIN", 334)
	c.Expect(t, noNULs, 501)
	c.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==", 535) // wrong password
	c.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 235)
}
