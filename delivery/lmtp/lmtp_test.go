package lmtp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/internal/clienttest"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

func message(subject string) []byte {
	return []byte("From: a@example.net\r\nTo: alice@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.net>\r\n\r\nHello.\r\n.leading dot survives\r\n..two dots\r\nbye\r\n")
}

// deliver sends msg to rcpts at dest; the results say what failed.
func deliver(t *testing.T, c *lmtp.Client, dest string, rcpts []string, msg []byte) []lmtp.RcptResult {
	t.Helper()
	res, _ := clienttest.Send(t, c, dest, rcpts, msg)
	return res
}

func TestDovecotPerRecipient(t *testing.T) {
	dc := dovecottest.Start(t, "alice@example.test", "bob@example.test")
	c, err := lmtp.New(lmtp.Config{LocalName: "mx.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := message("per-rcpt")
	res := deliver(t, c, dc.LMTPAddr(), []string{"alice@example.test", "nobody@example.test", "bob@example.test", "alice@example.test"}, msg)
	for i, want := range []lmtp.Status{lmtp.Delivered, lmtp.Permanent, lmtp.Delivered, lmtp.Delivered} {
		if res[i].Status != want {
			t.Errorf("%s: %v %q, want %v", res[i].Rcpt, res[i].Status, res[i].Reply, want)
		}
	}
	if r := res[1]; r.Code != 550 || r.Enhanced != "5.1.1" || !strings.HasPrefix(r.Reply, "550 5.1.1 ") {
		t.Errorf("unknown user: code %d enhanced %q reply %q, want 550 5.1.1", r.Code, r.Enhanced, r.Reply)
	}
	if !strings.HasPrefix(res[0].Reply, "250 2.0.0 ") {
		t.Errorf("delivered reply %q", res[0].Reply)
	}
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		got := dc.Messages(t, u)
		if len(got) != 1 { // the duplicate recipient is delivered once
			t.Fatalf("%s has %d messages, want 1\n%s", u, len(got), dc.Log())
		}
		if !bytes.Contains(got[0], []byte("\n.leading dot survives\n")) || !bytes.Contains(got[0], []byte("\n..two dots\n")) {
			t.Errorf("%s: body not intact:\n%s", u, got[0])
		}
		if !bytes.Contains(got[0], []byte("Return-Path: <sender@example.net>")) {
			t.Errorf("%s: no Return-Path from the envelope:\n%s", u, got[0])
		}
	}
}

func TestDovecotUnixSocketAndNullSender(t *testing.T) {
	dc := dovecottest.Start(t, "alice@example.test")
	c, _ := lmtp.New(lmtp.Config{})
	defer c.Close()
	msg := message("unix")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.Deliver(ctx, "lmtp:unix:"+dc.LMTPSocket(), "", []string{"alice@example.test"}, bytes.NewReader(msg), int64(len(msg)))
	if err != nil || res[0].Status != lmtp.Delivered {
		t.Fatalf("deliver over unix socket: %v %+v\n%s", err, res, dc.Log())
	}
	if got := dc.Messages(t, "alice@example.test"); len(got) != 1 || !bytes.Contains(got[0], []byte("Return-Path: <>")) {
		t.Fatalf("want one message with Return-Path: <>, got %q", got)
	}
}

func TestDovecotReuse(t *testing.T) {
	dc := dovecottest.Start(t, "alice@example.test")
	// A proxy in front of Dovecot counts connections and can cut them, as a server that
	// times out an idle session would.
	px := newProxy(t, dc.LMTPAddr())
	c, _ := lmtp.New(lmtp.Config{})
	defer c.Close()
	for i := range 5 {
		if r := deliver(t, c, px.addr(), []string{"alice@example.test"}, message(fmt.Sprint("reuse", i))); r[0].Status != lmtp.Delivered {
			t.Fatalf("message %d: %+v", i, r[0])
		}
	}
	if n := px.accepted(); n != 1 {
		t.Errorf("5 sequential messages used %d connections, want 1", n)
	}
	px.cut() // the idle session dies
	if r := deliver(t, c, px.addr(), []string{"alice@example.test"}, message("after-cut")); r[0].Status != lmtp.Delivered {
		t.Fatalf("after the server dropped the idle session: %+v", r[0])
	}
	if n := dc.Count("alice@example.test"); n != 6 {
		t.Errorf("alice has %d messages, want 6", n)
	}
	if n := px.accepted(); n != 2 {
		t.Errorf("connections = %d, want 2", n)
	}

	// Without reuse every message opens a session.
	c2, _ := lmtp.New(lmtp.Config{DisableReuse: true})
	defer c2.Close()
	for i := range 3 {
		deliver(t, c2, px.addr(), []string{"alice@example.test"}, message(fmt.Sprint("noreuse", i)))
	}
	if n := px.accepted(); n != 5 {
		t.Errorf("connections = %d, want 5", n)
	}
}

func TestDovecotConcurrent(t *testing.T) {
	dc := dovecottest.Start(t, "alice@example.test", "bob@example.test")
	c, _ := lmtp.New(lmtp.Config{MaxIdle: 3})
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			r := deliver(t, c, dc.LMTPAddr(), []string{"alice@example.test", "bob@example.test"}, message(fmt.Sprint("conc", i)))
			for _, x := range r {
				if x.Status != lmtp.Delivered {
					t.Errorf("%+v", x)
				}
			}
		})
	}
	wg.Wait()
	if a, b := dc.Count("alice@example.test"), dc.Count("bob@example.test"); a != 20 || b != 20 {
		t.Fatalf("alice %d, bob %d messages, want 20 each", a, b)
	}
}

func TestTemporaryFailures(t *testing.T) {
	c, _ := lmtp.New(lmtp.Config{ConnectTimeout: time.Second})
	defer c.Close()
	msg := message("x")

	// Nothing listening: every recipient is deferred with 4.4.1.
	dead := testenv.FreeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Deliver(ctx, dead, "a@example.net", []string{"x@example.test", "y@example.test"}, bytes.NewReader(msg), int64(len(msg)))
	if err == nil || res[0].Status != lmtp.Temporary || res[1].Status != lmtp.Temporary || res[0].Enhanced != "4.4.1" {
		t.Fatalf("connection refused: err %v, %+v", err, res)
	}

	// A server that never greets: the context's deadline ends the attempt.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	start := time.Now()
	res, err = c.Deliver(ctx2, l.Addr().String(), "a@example.net", []string{"x@example.test"}, bytes.NewReader(msg), int64(len(msg)))
	if err == nil || res[0].Status != lmtp.Temporary {
		t.Fatalf("silent server: err %v, %+v", err, res)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("silent server held the attempt for %v", d)
	}

	// Bad destinations.
	for _, d := range []string{"nohost", "unix:relative/path", ":24"} {
		if _, err := c.Deliver(context.Background(), d, "", []string{"x@example.test"}, bytes.NewReader(msg), int64(len(msg))); err == nil {
			t.Errorf("destination %q accepted", d)
		}
	}
}

// TestSinkTemporaryRcpt uses Postfix's smtp-sink in LMTP mode answering 4xx to RCPT.
func TestSinkTemporaryRcpt(t *testing.T) {
	sink := postfixtest.StartSinkDiscard(t, "", "-L", "-r", "RCPT", "-b", "452 4.2.2 mailbox full")
	c, _ := lmtp.New(lmtp.Config{})
	defer c.Close()
	res := deliver(t, c, sink.Addr, []string{"x@example.test"}, message("sink"))
	if r := res[0]; r.Status != lmtp.Temporary || r.Code != 452 || r.Enhanced != "4.2.2" {
		t.Fatalf("4xx RCPT: %+v", r)
	}
}

func TestParseDest(t *testing.T) {
	for dest, want := range map[string]string{
		"127.0.0.1:24":           "tcp 127.0.0.1:24",
		"lmtp:[::1]:24":          "tcp [::1]:24",
		"lmtp:inet:store:24":     "tcp store:24",
		"unix:/run/dovecot/lmtp": "unix /run/dovecot/lmtp",
		"lmtp:unix:/x":           "unix /x",
	} {
		n, a, err := lmtp.ParseDest(dest)
		if err != nil || n+" "+a != want {
			t.Errorf("ParseDest(%q) = %q %q %v, want %q", dest, n, a, err, want)
		}
	}
}

// proxy forwards TCP connections to a backend and can cut them all.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	n     int
	conns []net.Conn
}

func newProxy(t *testing.T, backend string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.n++
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }
func (p *proxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	time.Sleep(20 * time.Millisecond)
}

var _ = errors.New

func TestVerifyDovecot(t *testing.T) {
	dc := dovecottest.Start(t, "alice@example.test")
	c, _ := lmtp.New(lmtp.Config{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for rcpt, want := range map[string]bool{"alice@example.test": true, "nobody@example.test": false, "ALICE@example.test": true} {
		got, err := c.Verify(ctx, dc.LMTPAddr(), rcpt)
		if err != nil || got != want {
			t.Errorf("Verify(%s) = %v %v, want %v", rcpt, got, err, want)
		}
	}
	if n := dc.Count("alice@example.test"); n != 0 {
		t.Errorf("verification delivered %d messages", n)
	}
	// The same session still delivers afterwards.
	if r := deliver(t, c, dc.LMTPAddr(), []string{"alice@example.test"}, message("after-verify")); r[0].Status != lmtp.Delivered {
		t.Fatalf("%+v", r[0])
	}
	// No server: an error, not a "no".
	dead := testenv.FreeAddr(t)
	if _, err := c.Verify(ctx, dead, "alice@example.test"); err == nil {
		t.Error("Verify against a dead server gave no error")
	}
}
