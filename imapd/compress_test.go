package imapd

import (
	"bufio"
	"compress/flate"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// deflateClient speaks IMAP over COMPRESS=DEFLATE (RFC 4978) with compress/flate: each
// command ends with a sync flush, and the server's responses are decoded as they come
// (the server ends each write with a sync flush, which compress/flate needs).
type deflateClient struct {
	t  *testing.T
	zw *flate.Writer
	zr *bufio.Reader
}

func startDeflate(t *testing.T, r *raw) *deflateClient {
	t.Helper()
	r.ok("COMPRESS DEFLATE")
	zw, _ := flate.NewWriter(r.conn, flate.DefaultCompression)
	return &deflateClient{t: t, zw: zw, zr: bufio.NewReader(flate.NewReader(r.r))}
}

func (d *deflateClient) send(line string) []string {
	d.t.Helper()
	fmt.Fprintf(d.zw, "%s\r\n", line)
	d.zw.Flush()
	var out []string
	for {
		l, err := d.zr.ReadString('\n')
		if err != nil {
			d.t.Fatalf("%s: %v", line, err)
		}
		out = append(out, strings.TrimRight(l, "\r\n"))
		if strings.HasPrefix(l, "z ") {
			return out
		}
	}
}

// COMPRESS=DEFLATE (RFC 4978): after the OK both directions are raw DEFLATE, each
// response flushed whole; a second COMPRESS is refused; a literal and a large FETCH go
// through; other sessions' updates reach an IDLE over DEFLATE.
func TestCompressDeflate(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	big := "Subject: big\r\n\r\n" + strings.Repeat("All work and no play. 0123456789\r\n", 30000)
	e.deliver(t, "alice@example.org", big)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	if lines := r.ok("CAPABILITY"); !strings.Contains(lines[0], " COMPRESS=DEFLATE") {
		t.Fatalf("COMPRESS=DEFLATE not announced: %q", lines)
	}
	d := startDeflate(t, r)
	lines := d.send("z SELECT INBOX")
	if !strings.HasPrefix(lines[len(lines)-1], "z OK [READ-WRITE]") || lines[0] != "* 2 EXISTS" {
		t.Fatalf("SELECT over DEFLATE: %q", lines)
	}
	lines = d.send("z FETCH 1 BODY.PEEK[]")
	if !strings.Contains(strings.Join(lines, "\n"), "Zebra.") {
		t.Errorf("FETCH over DEFLATE: %q", lines)
	}
	lines = d.send("z FETCH 2 BODY.PEEK[]")
	if got := strings.Join(lines, "\r\n"); !strings.Contains(got, big) || !strings.HasPrefix(lines[len(lines)-1], "z OK") {
		t.Errorf("FETCH of %d bytes over DEFLATE: %d bytes back", len(big), len(got))
	}
	lines = d.send("z APPEND INBOX {12+}\r\nSubject: x\r\n")
	if !strings.HasPrefix(lines[len(lines)-1], "z OK [APPENDUID") {
		t.Errorf("APPEND over DEFLATE: %q", lines)
	}
	if lines := d.send("z COMPRESS DEFLATE"); !strings.HasPrefix(lines[0], "z NO [COMPRESSIONACTIVE]") {
		t.Errorf("second COMPRESS: %q", lines)
	}
	// IDLE: a delivery by another path shows up.
	fmt.Fprintf(d.zw, "z IDLE\r\n")
	d.zw.Flush()
	if l, err := d.zr.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q %v", l, err)
	}
	e.deliver(t, "alice@example.org", msgB)
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := d.zr.ReadString('\n'); err != nil || l != "* 4 EXISTS\r\n" {
		t.Fatalf("IDLE update over DEFLATE: %q %v", l, err)
	}
	fmt.Fprintf(d.zw, "DONE\r\n")
	d.zw.Flush()
	if lines := d.send("z LOGOUT"); !strings.HasPrefix(lines[len(lines)-1], "z OK") {
		t.Errorf("LOGOUT: %q", lines)
	}
}

// A DEFLATE bomb (a few KiB that inflate to a line of 64 MiB) gets the over-long line's
// BYE after about 1 MiB, not 64 MiB of work, and the server serves the next session.
func TestCompressBomb(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("COMPRESS DEFLATE")
	zw, _ := flate.NewWriter(r.conn, flate.BestCompression)
	go func() {
		chunk := []byte(strings.Repeat("x", 1<<20))
		for i := 0; i < 64; i++ {
			if _, err := zw.Write(chunk); err != nil {
				return // the server closed the connection
			}
		}
		zw.Flush()
	}()
	r.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	out, err := io.ReadAll(flate.NewReader(r.r))
	if !strings.Contains(string(out), "BAD [TOOBIG]") && !strings.Contains(string(out), "* BYE") {
		t.Fatalf("no BAD or BYE for the bomb: %q %v", out, err)
	}
	r2 := dialRaw(t, e.addr)
	r2.ok(`LOGIN alice@example.org "secret pw"`)
	r2.ok("SELECT INBOX")
}
