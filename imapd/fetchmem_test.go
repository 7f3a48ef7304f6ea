package imapd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A client that asks for a large section and stops reading blocks its FETCH in a write
// to the socket, for up to the write timeout (5 minutes). It holds only its copy buffers
// of the memory budget (Config.FetchMemory) meanwhile, not the share the parse of the
// message's structure took (up to 2 MiB, all of a small budget): another user's FETCH,
// which parses a structure too, is answered at once. Before, bob waited memWait (30 s)
// and got NO [UNAVAILABLE].
func TestStalledFetchReaderHoldsOnlyBuffers(t *testing.T) {
	e := start(t, Config{Trusted: true, FetchMemory: 512 << 10})
	// 8 MiB of attachment: more than the socket buffers of both ends hold.
	att := strings.Repeat(strings.Repeat("QUJD", 19)+"\r\n", 8<<20/78)
	big := "From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + att + "--b--\r\n"
	e.deliver(t, "alice@example.org", big)
	small := "From: b@example.org\r\nSubject: small\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n" +
		"--c\r\nContent-Type: text/plain\r\n\r\nhello bob\r\n--c--\r\n"
	e.deliver(t, "bob@example.org", small)

	// alice's connection reads into a small window and then not at all.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.DialContext(context.Background(), "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := &raw{t: t, conn: c}
	a.r = bufio.NewReader(c)
	a.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if l := a.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("SELECT INBOX")
	fmt.Fprintf(a.conn, "s1 FETCH 1 (BODY.PEEK[2])\r\n")
	// Wait until alice's FETCH has parsed the structure and is stuck writing the part:
	// it then holds its copy buffers only (before, the parse's share too, all of it).
	var used int64
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		e.srv.mem.mu.Lock()
		used = e.srv.mem.used
		e.srv.mem.mu.Unlock()
		if used > 0 && used <= 2*copyBufSize {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("alice's stalled FETCH holds %d bytes of the budget, want 1 to %d (its copy buffers)", used, 2*copyBufSize)
			break
		}
	}

	b := dialRaw(t, e.addr)
	b.ok(`LOGIN bob@example.org pw2`)
	b.ok("SELECT INBOX")
	b.conn.SetDeadline(time.Now().Add(45 * time.Second)) // past memWait: its NO shows
	start := time.Now()
	lines := b.ok("FETCH 1 (BODY[1] BODYSTRUCTURE)")
	if took := time.Since(start); took > 10*time.Second || !strings.Contains(strings.Join(lines, "\n"), "hello bob") {
		t.Errorf("bob's FETCH beside a stalled reader took %v: %q", took, lines)
	}
}
