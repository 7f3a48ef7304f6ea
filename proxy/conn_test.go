package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
)

// TestReadMore: what a back-end wrote in pieces is read on without waiting while the
// IMAP response is incomplete, and readMore returns at once when nothing more is there.
func TestReadMore(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for _, p := range []string{"* 1 FETCH (BODY[] {5}\r\n", "hello", ")\r\nf OK done\r\n"} {
			c.Write([]byte(p))
		}
		time.Sleep(time.Second)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(100 * time.Millisecond) // all three pieces are in
	buf := make([]byte, 100)
	// A read of the first piece only, as the relay's may be.
	n, err := io.ReadFull(conn, buf[:len("* 1 FETCH (BODY[] {5}\r\n")])
	if err != nil {
		t.Fatal(err)
	}
	if !imapIncomplete(buf[:n]) {
		t.Fatalf("%q taken as complete", buf[:n])
	}
	n = readMore(conn, buf, n)
	if got := string(buf[:n]); got != "* 1 FETCH (BODY[] {5}\r\nhello)\r\nf OK done\r\n" {
		t.Fatalf("read %q", got)
	}
	if imapIncomplete(buf[:n]) {
		t.Fatalf("%q taken as incomplete", buf[:n])
	}
	start := time.Now()
	if m := readMore(conn, buf, n); m != n || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("readMore with nothing to read: %d bytes, %v", m-n, time.Since(start))
	}
	for _, tc := range []struct {
		chunk      string
		incomplete bool
	}{
		{"a OK done\r\n", false}, {"+ go ahead\r\n", false}, {"* 3 EXISTS\r\n", true},
		{"* 1 FETCH (FLAGS ())\r\na O", true}, {"* OK x\r\n* 2 EXPUNGE\r\nb OK y\r\n", false},
	} {
		if got := imapIncomplete([]byte(tc.chunk)); got != tc.incomplete {
			t.Errorf("imapIncomplete(%q) = %v", tc.chunk, got)
		}
	}
}

// countConn counts the writes to it.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestCork: a 20 KB response, several TLS records, leaves the proxy in one write when
// corked, and arrives whole.
func TestCork(t *testing.T) {
	a, b := net.Pipe()
	cc := &countConn{Conn: a}
	cork := &corkConn{Conn: cc}
	tc, _ := mailboxtest.Cert(t)
	srv := tls.Server(cork, tc)
	cli := tls.Client(b, &tls.Config{InsecureSkipVerify: true})
	go cli.Handshake()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("0123456789", 2000)
	got := make(chan string)
	go func() {
		buf := make([]byte, len(msg))
		io.ReadFull(cli, buf)
		got <- string(buf)
	}()
	cc.mu.Lock()
	cc.writes = 0
	cc.mu.Unlock()
	cork.cork()
	if _, err := srv.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cork.uncork(); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != msg {
		t.Fatal("the response arrived damaged")
	}
	if cc.writes != 1 {
		t.Fatalf("%d writes for 20 KB, want 1", cc.writes)
	}
}
