package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"syscall"
)

// Connections shaped for the relay's cost (issue 21). Relaying a chunk costs the proxy
// system calls and goroutine wake-ups more than anything it computes, so the types here
// save calls without delaying a byte: nothing waits for more data on a timer.

// headerConn sends the PROXY header together with the connection's first write (the TLS
// ClientHello, or a pipelined login): one segment and one system call instead of two.
// A read first sends the header alone, since the back-end says nothing before it.
type headerConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
}

func (c *headerConn) flushLocked(p []byte) (int, error) {
	if c.pending == nil {
		return c.Conn.Write(p)
	}
	b := append(c.pending, p...)
	c.pending = nil
	n, err := c.Conn.Write(b)
	return max(n-(len(b)-len(p)), 0), err
}

func (c *headerConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked(p)
}

func (c *headerConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.pending != nil {
		if _, err := c.flushLocked(nil); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// corkConn is the client's TCP connection under the proxy's TLS: while corked, the
// records crypto/tls writes one system call each (a 20 KB response is two records, and
// while a connection is young, crypto/tls's dynamic record sizing makes ~1 KB records:
// a dozen calls) are gathered and sent by uncork in one write.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was gathered.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 64<<10 {
		c.buf = nil // a large response's buffer is not kept for an idle session
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// relayBufs are the buffers of the back-end side of relays: 64 KB, taken when the
// back-end has sent something and given back once it is written to the client, so that
// the many sessions that wait (IDLE, a client between checks) hold none.
var relayBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readPooled reads what conn has into a buffer of relayBufs, taken only once the poller
// says there is something to read; the caller gives it back. It is conn.Read without a
// buffer held while waiting, at the same system calls.
func readPooled(rc syscall.RawConn) (*[]byte, int, error) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	err := rc.Read(func(fd uintptr) bool {
		if bp == nil {
			bp = relayBufs.Get().(*[]byte)
		}
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			relayBufs.Put(bp)
			bp = nil
			return false // wait for the poller
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if n < 0 {
		n = 0
	}
	if bp == nil && err == nil {
		err = io.ErrUnexpectedEOF
	}
	if bp != nil && n == 0 {
		relayBufs.Put(bp)
		bp = nil
	}
	return bp, n, err
}

// readMore appends to buf[n:] what the plaintext back-end connection already holds,
// without waiting (the socket is non-blocking under Go's poller; EAGAIN ends it): a
// response the back-end wrote in several pieces goes to the client as one TLS write
// when its rest has arrived, and is never held back when it has not.
func readMore(conn net.Conn, buf []byte, n int) int {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return n
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return n
	}
	for n < len(buf) {
		got := 0
		rc.Read(func(fd uintptr) bool {
			m, err := syscall.Read(int(fd), buf[n:])
			if err == nil && m > 0 {
				got = m
			}
			return true // never wait
		})
		if got == 0 {
			break
		}
		n += got
	}
	return n
}

// imapIncomplete says whether a chunk from an IMAP back-end ends before the response it
// belongs to: in the middle of a line, after a literal's announcement (RFC 9051 §4.3:
// the literal follows at once), or after an untagged response (a tagged one follows,
// unless it is unsolicited, such as IDLE's, where the read finds nothing and costs one
// system call). A tagged reply or a continuation request ends what the back-end sends.
func imapIncomplete(chunk []byte) bool {
	if !bytes.HasSuffix(chunk, []byte("\n")) {
		return true
	}
	body := bytes.TrimSuffix(bytes.TrimSuffix(chunk, []byte("\n")), []byte("\r"))
	if bytes.HasSuffix(body, []byte("}")) {
		return true
	}
	last := body[bytes.LastIndexByte(body, '\n')+1:]
	return bytes.HasPrefix(last, []byte("* "))
}
