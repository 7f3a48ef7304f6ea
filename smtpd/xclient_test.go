package smtpd_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// connSeen records the client each stage was judged for.
type connSeen struct {
	mu   sync.Mutex
	seen map[policy.Stage]policy.Conn
}

func (cs *connSeen) engine() smtpd.Engine {
	return smtpd.EngineFunc(func(_ context.Context, stage policy.Stage, tx *policy.Transaction) policy.Decision {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if cs.seen == nil {
			cs.seen = map[policy.Stage]policy.Conn{}
		}
		cs.seen[stage] = tx.Conn
		if tx.Conn.IP.String() == "192.0.2.66" && stage == policy.StageConnect {
			return policy.Decision{Verdict: policy.Reject, Reply: policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "blocked client"}}
		}
		return policy.Decision{}
	})
}

func (cs *connSeen) at(s policy.Stage) policy.Conn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.seen[s]
}

func startXclient(t *testing.T, from []string, cs *connSeen) *testServer {
	return start(t, func(cfg *smtpd.Config, deps *smtpd.Deps) {
		cfg.Listeners[0].XClientFrom = from
		deps.Engine = cs.engine()
	})
}

// TestXclient: an authorized proxy sees XCLIENT announced, hands over the client, gets
// the greeting again, and every stage is judged for the client it named.
func TestXclient(t *testing.T) {
	cs := &connSeen{}
	// The clients the test names in turn may send XCLIENT again (see
	// TestXclientNotFromTheClientItNames).
	ts := startXclient(t, []string{"127.0.0.0/8", "2001:db8::7", "192.0.2.8"}, cs)
	c := dial(t, ts.addr("mx"))
	r := c.Expect(t, "EHLO proxy.example", 250)
	if !r.Has("XCLIENT NAME ADDR PORT PROTO HELO REVERSE_NAME LOGIN DESTADDR DESTPORT") {
		t.Fatalf("EHLO does not announce XCLIENT: %v", r)
	}
	r = c.Expect(t, "XCLIENT ADDR=IPV6:2001:db8::7 NAME=mail.client+2Eexample PORT=4711 PROTO=ESMTP REVERSE_NAME=[UNAVAILABLE] DESTADDR=198.51.100.1 DESTPORT=25", 220)
	if !strings.Contains(r.Text(), "mx.example.test") {
		t.Errorf("greeting after XCLIENT: %v", r)
	}
	if got := cs.at(policy.StageConnect); got.IP.String() != "2001:db8::7" || got.Hostname != "mail.client.example" ||
		got.Port != 4711 || got.PTRNames != nil || got.LocalIP.String() != "198.51.100.1" || got.LocalPort != 25 || got.HELO != "" {
		t.Errorf("connect stage saw %+v", got)
	}
	c.Expect(t, "EHLO client.example", 250)
	if got := cs.at(policy.StageHelo); got.IP.String() != "2001:db8::7" || got.HELO != "client.example" {
		t.Errorf("helo stage saw %+v", got)
	}
	c.Transaction(t, "a@remote.example", []string{"u@example.test"}, "Subject: x\r\n\r\nXCLIENT ADDR=192.0.2.1\r\n")
	c.Expect(t, "", 250)
	if got := cs.at(policy.StageData); got.IP.String() != "2001:db8::7" {
		t.Errorf("data stage saw %+v", got)
	}
	if m := ts.q.messages(); len(m) != 1 || !strings.Contains(string(m[0].Data), "\r\nXCLIENT ADDR=192.0.2.1\r\n") {
		t.Errorf("the body line that looks like XCLIENT did not reach the queue: %v", m)
	}

	// HELO and LOGIN given: the helo stage runs at once; a later XCLIENT moves again.
	c.Expect(t, "XCLIENT ADDR=192.0.2.8 HELO=given.example LOGIN=alice NAME=[TEMPUNAVAIL]", 220)
	if got := cs.at(policy.StageHelo); got.IP.String() != "192.0.2.8" || got.HELO != "given.example" || got.AuthUser != "alice" || !got.DNSError {
		t.Errorf("helo stage after XCLIENT HELO= saw %+v", got)
	}
	// A refused client: the connect stage's refusal answers RCPT (delay_reject).
	c.Expect(t, "XCLIENT ADDR=192.0.2.66 HELO=[UNAVAILABLE] LOGIN=[UNAVAILABLE]", 220)
	c.Expect(t, "EHLO client.example", 250)
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	if r := c.Expect(t, "RCPT TO:<u@example.test>", 554); !strings.Contains(r.Text(), "blocked client") {
		t.Errorf("RCPT from the refused client: %v", r)
	}
	// Inside a transaction XCLIENT is not taken (answered as an unknown command).
	c.Expect(t, "XCLIENT ADDR=192.0.2.9", 501)
	c.Expect(t, "RSET", 250)
	c.Expect(t, "QUIT", 221)
}

// TestXclientRefused: a client outside xclient_from never sees XCLIENT and gets 550
// 5.7.0; the session goes on as its own.
func TestXclientRefused(t *testing.T) {
	cs := &connSeen{}
	ts := startXclient(t, []string{"10.0.0.0/8"}, cs)
	c := dial(t, ts.addr("mx"))
	if r := c.Expect(t, "EHLO proxy.example", 250); r.Has("XCLIENT") {
		t.Fatalf("XCLIENT announced to an unauthorized client: %v", r)
	}
	r := c.Expect(t, "XCLIENT ADDR=192.0.2.7", 550)
	if r.Enhanced() != "5.7.0" {
		t.Errorf("refusal: %v", r)
	}
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	c.Expect(t, "RCPT TO:<u@example.test>", 250)
	if got := cs.at(policy.StageRcpt); got.IP.String() != "127.0.0.1" {
		t.Errorf("rcpt stage saw %+v", got)
	}

	// Off by default: the same 550.
	ts2 := startXclient(t, nil, cs)
	c2 := dial(t, ts2.addr("mx"))
	c2.Expect(t, "XCLIENT ADDR=192.0.2.7", 550)
}

// TestXclientSyntax: malformed commands get 501 and change nothing; a command split
// over several packets is still one command.
func TestXclientSyntax(t *testing.T) {
	cs := &connSeen{}
	ts := startXclient(t, []string{"127.0.0.1"}, cs)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO proxy.example", 250)
	for _, cmd := range []string{
		"XCLIENT",
		"XCLIENT FOO=bar",
		"XCLIENT ADDR",
		"XCLIENT ADDR=999.1.1.1",
		"XCLIENT ADDR=[TEMPUNAVAIL]",
		"XCLIENT PORT=70000",
		"XCLIENT PROTO=UUCP",
		"XCLIENT NAME=a+0Ab.example",
		"XCLIENT HELO=a+20b",
		"XCLIENT LOGIN=+4",
		"XCLIENT HELO=x=y",
	} {
		if r, err := c.Cmd(cmd); err != nil || r.Code != 501 {
			t.Errorf("%q: %v %v, want 501", cmd, r, err)
		}
	}
	if got := cs.at(policy.StageConnect); got.IP.String() != "127.0.0.1" {
		t.Errorf("a refused XCLIENT changed the client: %+v", got)
	}
	// One byte at a time.
	for _, b := range []byte("xclient addr=192.0.2.44\r\n") {
		if err := c.Send(string(b)); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := c.ReadReply(); err != nil || r.Code != 220 {
		t.Fatalf("dripped XCLIENT: %v %v", r, err)
	}
	if got := cs.at(policy.StageConnect); got.IP.String() != "192.0.2.44" {
		t.Errorf("dripped XCLIENT: connect stage saw %+v", got)
	}
	// A command that only starts like XCLIENT is go-smtp's.
	c.Expect(t, "XCLIENTS ADDR=1.2.3.4", 501)
	c.Expect(t, "NOOP", 250)
}

// TestXclientNotInRejectedChunk: the chunk of a BDAT that go-smtp refuses (no MAIL yet)
// still follows the command and is discarded (RFC 3030 §2); a line in it that looks like
// XCLIENT is data, not a command: a proxy that relays its clients' chunks must not have
// them change the session's client.
func TestXclientNotInRejectedChunk(t *testing.T) {
	cs := &connSeen{}
	ts := startXclient(t, []string{"127.0.0.0/8"}, cs)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO proxy.example", 250)
	chunk := "XCLIENT ADDR=192.0.2.55\r\n"
	c.Expect(t, "BDAT "+strconv.Itoa(len(chunk))+" LAST", 502)
	if err := c.Send(chunk); err != nil {
		t.Fatal(err)
	}
	c.Expect(t, "NOOP", 250)
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	c.Expect(t, "RCPT TO:<u@example.test>", 250)
	if got := cs.at(policy.StageRcpt); got.IP.String() != "127.0.0.1" {
		t.Errorf("a chunk's XCLIENT line changed the client: rcpt stage saw %+v", got)
	}
	// A malformed BDAT has no chunk (go-smtp answers 501): the next line is a command.
	c.Expect(t, "RSET", 250)
	c.Expect(t, "BDAT 30 NOTLAST", 501)
	c.Expect(t, "XCLIENT ADDR=192.0.2.56", 220)
}

// TestXclientResetsHeloAndLogin: attributes an XCLIENT command does not give keep no
// value of the client before it for the HELO name and the login (Postfix's xclient_cmd
// resets both): a second XCLIENT without LOGIN is not authenticated as the first
// client's user, and the proxy's own EHLO name is not judged as the new client's.
func TestXclientResetsHeloAndLogin(t *testing.T) {
	cs := &connSeen{}
	ts := startXclient(t, []string{"127.0.0.0/8", "192.0.2.8"}, cs)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO proxy.example", 250)
	c.Expect(t, "XCLIENT ADDR=192.0.2.8 LOGIN=alice", 220)
	c.Expect(t, "XCLIENT ADDR=192.0.2.9", 220)
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	if got := cs.at(policy.StageMail); got.IP.String() != "192.0.2.9" || got.AuthUser != "" || got.HELO != "" {
		t.Errorf("mail stage after XCLIENT ADDR= alone saw %+v, want no login and no HELO", got)
	}
}

// TestXclientNotFromTheClientItNames: after XCLIENT the session is the client it named,
// and XCLIENT is that client's only when it is in xclient_from too (Postfix's
// xclient_cmd evaluates the authorization again). A proxy that relays its client's
// commands after its own XCLIENT (nginx's mail proxy) would otherwise let the client
// name any address and login: here the proxy's client, logged in as bob, may not become
// alice on a trusted address, nor sees XCLIENT announced.
func TestXclientNotFromTheClientItNames(t *testing.T) {
	cs := &connSeen{}
	ts := startXclient(t, []string{"127.0.0.0/8"}, cs)
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO proxy.example", 250)
	c.Expect(t, "XCLIENT ADDR=192.0.2.7 LOGIN=bob", 220)
	if r := c.Expect(t, "EHLO client.example", 250); r.Has("XCLIENT") {
		t.Errorf("XCLIENT announced to the client the proxy named: %v", r)
	}
	if r := c.Expect(t, "XCLIENT ADDR=127.0.0.1 LOGIN=alice", 550); r.Enhanced() != "5.7.0" {
		t.Errorf("refusal: %v", r)
	}
	c.Expect(t, "MAIL FROM:<a@remote.example>", 250)
	if got := cs.at(policy.StageMail); got.IP.String() != "192.0.2.7" || got.AuthUser != "bob" {
		t.Errorf("mail stage saw %+v, want the client the proxy named", got)
	}
}
