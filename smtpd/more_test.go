package smtpd_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/policy"

	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

func TestBDAT(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	part1, part2 := "Subject: chunked\r\n\r\n", "line one\r\n.line two\r\n"
	c.Send("BDAT " + itoa(len(part1)) + "\r\n" + part1)
	c.Expect(t, "", 250)
	c.Send("BDAT " + itoa(len(part2)) + " LAST\r\n" + part2)
	c.Expect(t, "", 250)
	got := ts.q.messages()
	if len(got) != 1 || !strings.HasSuffix(string(got[0].Data), part1+part2) {
		t.Fatalf("queued %+v", got)
	}
	// A bare LF in a chunk is refused as well.
	c = dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	bad := "Subject: x\r\n\r\nbare\nLF\r\n"
	c.Send("BDAT " + itoa(len(bad)) + " LAST\r\n" + bad)
	c.Expect(t, "", 550)
	if n := len(ts.q.messages()); n != 1 {
		t.Errorf("queued %d, want 1", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// A client rejected at connect (delay_reject) can still submit once authenticated: the
// connect rule says !client.authenticated, and AUTH makes smtpd judge connect again.
func TestAuthClearsDelayedConnectReject(t *testing.T) {
	ts := start(t, nil)
	c := dialFrom(t, ts.addr("submission"), 2)
	c.Expect(t, "", 220)
	authenticate(t, c)
	c.Expect(t, "MAIL FROM:<alice@example.test>", 250)
	c.Expect(t, "RCPT TO:<x@elsewhere.test>", 250)

	// The same address on the MX port, unauthenticated: rejected at RCPT.
	c = dialFrom(t, ts.addr("mx"), 2)
	c.Expect(t, "", 220)
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 554)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := start(t, func(_ *smtpd.Config, d *smtpd.Deps) { d.Metrics = reg })
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<x@other.test>", 554)
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	c.Expect(t, "DATA", 354)
	c.Send(smtptest.Message("a@example.net", "bob@example.test", "m", 100) + ".\r\n")
	c.Expect(t, "", 250)
	c.Expect(t, "QUIT", 221)
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"portcullis_smtpd_connections_total", map[string]string{"listener": "mx", "result": "accepted"}, 1},
		{"portcullis_smtpd_messages_total", map[string]string{"listener": "mx", "outcome": "queued"}, 1},
		{"portcullis_smtpd_replies_total", map[string]string{"stage": "rcpt", "class": "5xx"}, 1},
		{"portcullis_smtpd_replies_total", map[string]string{"stage": "data", "class": "2xx"}, 1},
		{"portcullis_smtpd_stage_duration_seconds", map[string]string{"stage": "rcpt"}, 1},
	} {
		if got := metricValue(t, reg, want.name, want.labels); got != want.value {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.value)
		}
	}
}

// metricValue returns the value of the series of name matching labels (a histogram's
// sample count).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func TestPrepareMessageStripsHeaders(t *testing.T) {
	ts := start(t, func(_ *smtpd.Config, d *smtpd.Deps) {
		d.PrepareMessage = smtpd.RewriteHeader(func(h *textproto.Header) bool {
			return dkim.StripForgedAuthResults(h, "mx.example.test") > 0
		})
	})
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	for _, msg := range []string{
		"Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\nAuthentication-Results: other.test; spf=pass\r\nSubject: forged\r\n\r\nbody\r\n",
		"Subject: clean\r\n\r\nbody\r\n",
	} {
		c.Expect(t, "MAIL FROM:<a@example.net>", 250)
		c.Expect(t, "RCPT TO:<bob@example.test>", 250)
		c.Expect(t, "DATA", 354)
		c.Send(msg + ".\r\n")
		c.Expect(t, "", 250)
	}
	got := ts.q.messages()
	if len(got) != 2 {
		t.Fatalf("queued %d", len(got))
	}
	body := string(got[0].Data)
	if strings.Contains(body, "mx.example.test; dkim=pass") || !strings.Contains(body, "Authentication-Results: other.test; spf=pass\r\nSubject: forged\r\n\r\nbody\r\n") {
		t.Errorf("forged header not stripped:\n%s", got[0].Data)
	}
	if !strings.HasSuffix(string(got[1].Data), "Subject: clean\r\n\r\nbody\r\n") {
		t.Errorf("clean message altered:\n%s", got[1].Data)
	}
}

// go-smtp runs Data in its own goroutine during BDAT and goes on reading commands: AUTH
// and RSET between chunks must neither race nor deadlock with it.
func TestBDATWithCommandsBetweenChunks(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr("submission"))
	authenticate(t, c)
	c.Expect(t, "MAIL FROM:<alice@example.test>", 250)
	c.Expect(t, "RCPT TO:<x@elsewhere.test>", 250)
	c.Send("BDAT 17\r\nSubject: chunks\r\n")
	c.Expect(t, "", 250)
	c.Expect(t, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 503)
	c.Expect(t, "NOOP", 250)
	c.Send("BDAT 8 LAST\r\n\r\nbody\r\n")
	c.Expect(t, "", 250)
	// RSET in the middle of a chunked transfer abandons it.
	c.Expect(t, "MAIL FROM:<alice@example.test>", 250)
	c.Expect(t, "RCPT TO:<x@elsewhere.test>", 250)
	c.Send("BDAT 17\r\nSubject: chunks\r\n")
	c.Expect(t, "", 250)
	c.Expect(t, "RSET", 250)
	c.Expect(t, "NOOP", 250)
	got := ts.q.messages()
	if len(got) != 1 || !strings.HasSuffix(string(got[0].Data), "Subject: chunks\r\n\r\nbody\r\n") {
		t.Fatalf("queued %+v", got)
	}
}

// A connect-stage tempfail without delay_reject is a 421 greeting and a close.
func TestConnectTempfail(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.DelayReject = ptr(false)
		d.Engine = smtpd.EngineFunc(func(_ context.Context, s policy.Stage, _ *policy.Transaction) policy.Decision {
			if s == policy.StageConnect {
				return policy.Decision{Verdict: policy.Tempfail, Reply: policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "DNS trouble"}}
			}
			return policy.Decision{}
		})
	})
	c := connect(t, ts.addr("mx"))
	if r := c.Expect(t, "", 421); r.Text() != "4.7.1 DNS trouble" {
		t.Errorf("greeting %v", r)
	}
	if _, err := c.Cmd("EHLO x.example.net"); err == nil {
		t.Errorf("connection still open")
	}
}

// A panicking engine tempfails the stage; the server survives.
func TestEnginePanic(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.DelayReject = ptr(false)
		d.Engine = smtpd.EngineFunc(func(_ context.Context, s policy.Stage, tx *policy.Transaction) policy.Decision {
			if s == policy.StageConnect && tx.Conn.IP.String() == "127.0.0.2" || s == policy.StageRcpt {
				panic("boom")
			}
			return policy.Decision{}
		})
	})
	c := dialFrom(t, ts.addr("mx"), 2)
	c.Expect(t, "", 421)
	c = dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 451)
}

// Headers and tags of every stage reach the queued message; quarantine at rcpt applies.
func TestHeadersAndTagsOfAllStages(t *testing.T) {
	ts := start(t, func(_ *smtpd.Config, d *smtpd.Deps) {
		d.Engine = smtpd.EngineFunc(func(_ context.Context, s policy.Stage, tx *policy.Transaction) policy.Decision {
			d := policy.Decision{Tags: []string{s.String()}, Headers: []policy.Header{{Name: "X-Stage-" + s.String(), Value: "yes\r\nInjected: no"}}}
			if s == policy.StageRcpt && tx.Rcpt.Local == "q" {
				d.Verdict = policy.Quarantine
			}
			return d
		})
	})
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Transaction(t, "a@example.net", []string{"q@example.test"}, smtptest.Message("a@example.net", "q@example.test", "x", 10))
	c.Expect(t, "", 250)
	got := ts.q.messages()
	if len(got) != 1 {
		t.Fatalf("queued %d", len(got))
	}
	m := got[0]
	if strings.Join(m.Env.Tags, ",") != "connect,helo,mail,rcpt,data" || !m.Env.Quarantine {
		t.Errorf("envelope %+v", m.Env)
	}
	for _, s := range []string{"connect", "helo", "mail", "rcpt", "data"} {
		if !strings.Contains(string(m.Data), "X-Stage-"+s+": yes  Injected: no\r\n") {
			t.Errorf("header of %s missing or not sanitized:\n%s", s, m.Data)
		}
	}
}

func TestLineLength(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) { c.MaxLineSize = 200 })
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	r, err := c.Cmd("MAIL FROM:<" + strings.Repeat("a", 300) + "@example.net>")
	if err != nil || r.Code != 500 {
		t.Errorf("long command: %v %v", r, err)
	}
	c = dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	c.Expect(t, "MAIL FROM:<a@example.net>", 250)
	c.Expect(t, "RCPT TO:<bob@example.test>", 250)
	c.Expect(t, "DATA", 354)
	c.Send("Subject: long\r\n\r\n" + strings.Repeat("x", 300) + "\r\n.\r\n")
	if r, err := c.ReadReply(); err != nil || r.Code != 500 {
		t.Errorf("long data line: %v %v", r, err)
	}
	// go-smtp adds its own "500 5.4.0 Too long line, closing connection", then closes.
	closed := false
	for range 3 {
		if _, err := c.ReadReply(); err != nil {
			closed = errors.Is(err, io.EOF)
			break
		}
	}
	if !closed {
		t.Errorf("session still open after a line too long")
	}
	if n := ts.q.count(); n != 0 {
		t.Errorf("queued %d", n)
	}
}

func TestTotalConnectionLimit(t *testing.T) {
	ts := start(t, func(c *smtpd.Config, _ *smtpd.Deps) { c.MaxConnections = 2 })
	dialFrom(t, ts.addr("mx"), 3).Expect(t, "", 220)
	dialFrom(t, ts.addr("mx"), 4).Expect(t, "", 220)
	if r := dialFrom(t, ts.addr("mx"), 5).Expect(t, "", 421); !strings.Contains(r.Text(), "server limit") {
		t.Errorf("over the total: %v", r)
	}
}
