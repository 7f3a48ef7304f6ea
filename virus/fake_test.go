package virus_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/virus"
	"github.com/portcullis-mail/portcullis/virus/clamdtest"
)

// answer returns a fake handler that answers PING with PONG and every scan with line.
func answer(line string) clamdtest.Handler {
	return func(r *clamdtest.Request) {
		if r.Command == "PING" {
			r.Reply("PONG")
			return
		}
		r.Reply(line)
	}
}

// fast returns a config with short timeouts for the fake's error paths.
func fast(addrs ...string) virus.Config {
	return virus.Config{Addrs: addrs, ConnectTimeout: time.Second, WriteTimeout: 300 * time.Millisecond,
		ReplyTimeout: 300 * time.Millisecond, Timeout: 5 * time.Second}
}

func TestFakeBrokenReplies(t *testing.T) {
	cases := []struct {
		name    string
		handler clamdtest.Handler
		want    string
	}{
		{"garbage", func(r *clamdtest.Request) { r.Reply("hello there") }, "not a scan result"},
		{"never", func(r *clamdtest.Request) { r.Hang() }, "timeout"},
		{"half written", func(r *clamdtest.Request) { r.Raw([]byte("stream: O")); r.Close() }, "cut short"},
		{"closed", func(r *clamdtest.Request) { r.Close() }, "closed before the reply"},
		{"wrong id", func(r *clamdtest.Request) { r.Raw([]byte("7: stream: OK\x00")) }, "want 1"},
		{"too long", func(r *clamdtest.Request) { r.Raw(bytes.Repeat([]byte("A"), 5000)) }, "longer than"},
		{"empty name", func(r *clamdtest.Request) { r.Reply("stream:  FOUND") }, "bad signature name"},
		{"binary", func(r *clamdtest.Request) { r.Raw([]byte("stream: \x01 FOUND\x00")) }, "control character"},
		{"daemon error", func(r *clamdtest.Request) { r.Reply("stream: Can't allocate memory ERROR") }, "Can't allocate memory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := clamdtest.StartFake(t, tc.handler)
			c := newClient(t, fast(f.Addr()))
			start := time.Now()
			res, err := c.Scan(t.Context(), strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
			if !errors.Is(err, virus.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %+v, %v; want ErrUnavailable mentioning %q", res, err, tc.want)
			}
			if res.Infected {
				t.Fatal("a broken reply reported as infected")
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %s", el)
			}
		})
	}
}

func TestFakeSessionReuse(t *testing.T) {
	f := clamdtest.StartFake(t, answer("stream: OK"))
	c := newClient(t, virus.Config{Addrs: []string{f.Addr()}})
	for range 5 {
		if _, err := c.Scan(t.Context(), strings.NewReader("hello")); err != nil {
			t.Fatal(err)
		}
	}
	if f.Conns() != 1 || f.Requests() != 5 {
		t.Errorf("sessions: %d connections for %d requests, want 1 for 5", f.Conns(), f.Requests())
	}
	g := clamdtest.StartFake(t, answer("stream: OK"))
	d := newClient(t, virus.Config{Addrs: []string{g.Addr()}, NoSessions: true})
	for range 5 {
		if _, err := d.Scan(t.Context(), strings.NewReader("hello")); err != nil {
			t.Fatal(err)
		}
	}
	if g.Conns() != 5 {
		t.Errorf("no_sessions: %d connections for 5 scans", g.Conns())
	}
}

// A daemon that ends the session after each reply (as clamd does after IdleTimeout) costs
// a reconnect, never a failed scan.
func TestFakeStaleSession(t *testing.T) {
	f := clamdtest.StartFake(t, func(r *clamdtest.Request) { r.Reply("stream: OK"); r.Close() })
	c := newClient(t, fast(f.Addr()))
	for i := range 5 {
		if _, err := c.Scan(t.Context(), strings.NewReader("hello")); err != nil {
			t.Fatalf("scan %d: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond) // let the close arrive
	}
	if f.Conns() != 5 {
		t.Errorf("%d connections, want 5", f.Conns())
	}
}

func TestFakeChunking(t *testing.T) {
	var got atomic.Value
	f := clamdtest.StartFake(t, func(r *clamdtest.Request) { got.Store(r.Body); r.Reply("stream: OK") })
	for _, chunk := range []int{1, 7, 4096} {
		c := newClient(t, virus.Config{Addrs: []string{f.Addr()}, ChunkSize: bytesize.Size(chunk)})
		for _, n := range []int{0, 1, 6, 7, 8, 100, 5000} {
			body := bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
			res, err := c.Scan(t.Context(), nonSeeker{bytes.NewReader(body)})
			if err != nil || res.Size != int64(n) {
				t.Fatalf("chunk %d size %d: %+v %v", chunk, n, res, err)
			}
			if b, _ := got.Load().([]byte); !bytes.Equal(b, body) {
				t.Fatalf("chunk %d size %d: the daemon received %d different bytes", chunk, n, len(b))
			}
		}
	}
}

func TestFakeFailoverAndBreaker(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	bad := clamdtest.StartFake(t, func(r *clamdtest.Request) {
		if r.Command == "PING" {
			r.Reply("PONG")
		} else if broken.Load() {
			r.Reply("stream: Can't create temporary directory ERROR")
		} else {
			r.Reply("stream: Fake.Sig FOUND")
		}
	})
	good := clamdtest.StartFake(t, answer("stream: OK"))
	cfg := fast(bad.Addr(), good.Addr())
	cfg.Cooldown = 1500 * time.Millisecond // longer than 10 scans take, even on a loaded machine
	c := newClient(t, cfg)
	msg := []byte("Subject: x\r\n\r\n" + strings.Repeat("body\r\n", 1000))
	for i := range 10 {
		res, err := c.Scan(t.Context(), bytes.NewReader(msg))
		if err != nil || res.Infected || res.Daemon != good.Addr() {
			t.Fatalf("scan %d: %+v %v", i, res, err)
		}
	}
	// Three failures took the bad daemon out of rotation: it saw no more scans.
	if bad.Requests() != 3 {
		t.Errorf("the failing daemon got %d scans, want 3", bad.Requests())
	}
	// After the cooldown a PING probe lets it back in; it works again now.
	broken.Store(false)
	time.Sleep(cfg.Cooldown + 50*time.Millisecond)
	seen := false
	for range 4 {
		res, err := c.Scan(t.Context(), bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		seen = seen || res.Signature == "Fake.Sig"
	}
	if !seen {
		t.Error("the daemon did not come back after the cooldown")
	}
}

func TestFakeNoFailoverWithoutSeek(t *testing.T) {
	bad := clamdtest.StartFake(t, answer("garbage"))
	good := clamdtest.StartFake(t, answer("stream: OK"))
	c := newClient(t, fast(bad.Addr(), good.Addr()))
	// Round robin starts at the second daemon; make the first scan land on the good one
	// so that the next starts at the bad one.
	_, _ = c.Scan(t.Context(), strings.NewReader("x"))
	before := good.Requests()
	// The stream was consumed by the bad daemon and cannot be replayed.
	_, err := c.Scan(t.Context(), nonSeeker{strings.NewReader("consumed")})
	if !errors.Is(err, virus.ErrUnavailable) || good.Requests() != before {
		t.Fatalf("non-seekable: %v (good daemon requests %d -> %d)", err, before, good.Requests())
	}
	// A seekable reader is rewound and scanned by the next daemon.
	_, _ = c.Scan(t.Context(), strings.NewReader("x"))
	if res, err := c.Scan(t.Context(), strings.NewReader("rewound")); err != nil || res.Daemon != good.Addr() {
		t.Fatalf("seekable: %+v %v", res, err)
	}
}

func TestFakeCancel(t *testing.T) {
	var hang atomic.Bool
	hang.Store(true)
	f := clamdtest.StartFake(t, func(r *clamdtest.Request) {
		if hang.Load() {
			r.Hang()
			return
		}
		r.Reply("stream: OK")
	})
	cfg := fast(f.Addr())
	cfg.ReplyTimeout = time.Minute
	c := newClient(t, cfg)
	for range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		ctx, cancel2 := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, cancel2)
		start := time.Now()
		_, err := c.Scan(ctx, strings.NewReader("x"))
		cancel()
		if !errors.Is(err, virus.ErrUnavailable) || time.Since(start) > time.Second {
			t.Fatalf("cancelled scan: %v after %s", err, time.Since(start))
		}
	}
	// Cancellation by the caller is not the daemon's failure: it stays in rotation.
	hang.Store(false)
	if _, err := c.Scan(t.Context(), strings.NewReader("x")); err != nil {
		t.Fatalf("after cancellations: %v", err)
	}
}

// A daemon that stops reading mid-stream is caught by the per-chunk write deadline.
func TestWriteDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, never read
		}
	}()
	c := newClient(t, fast("tcp:"+ln.Addr().String()))
	start := time.Now()
	_, err = c.Scan(t.Context(), bytes.NewReader(make([]byte, 16<<20)))
	if !errors.Is(err, virus.ErrUnavailable) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("got %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %s", el)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []virus.Config{
		{},
		{Addrs: []string{"unix:"}},
		{Addrs: []string{"tcp:nohost"}},
		{Addrs: []string{"localhost"}},
		{Addrs: []string{"tcp:127.0.0.1:3310"}, ChunkSize: 1 << 30},
	} {
		if _, err := virus.NewClient(cfg); err == nil {
			t.Errorf("NewClient(%+v) accepted", cfg)
		}
	}
	for _, a := range []string{"unix:/run/clamav/clamd.ctl", "/run/clamav/clamd.ctl", "tcp:127.0.0.1:3310", "[::1]:3310", "tcp:clamav.internal:3310"} {
		if _, err := virus.NewClient(virus.Config{Addrs: []string{a}}); err != nil {
			t.Errorf("NewClient(%q): %v", a, err)
		}
	}
}
