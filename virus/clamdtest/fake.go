package clamdtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Request is one command the fake received.
type Request struct {
	// Command is the command without its z prefix and NUL: "INSTREAM", "PING", ...
	Command string
	// Body is the INSTREAM data, reassembled from its chunks.
	Body []byte
	// ID is the request number inside an IDSESSION (1, 2, ...), 0 outside one.
	ID   int
	conn net.Conn
	done chan struct{}
}

// Reply sends line as a reply (with the session's "ID: " prefix and the NUL terminator).
func (r *Request) Reply(line string) {
	if r.ID > 0 {
		line = strconv.Itoa(r.ID) + ": " + line
	}
	r.Raw([]byte(line + "\x00"))
}

// Raw sends b as is.
func (r *Request) Raw(b []byte) { _, _ = r.conn.Write(b) }

// Close closes the connection.
func (r *Request) Close() { _ = r.conn.Close() }

// Hang blocks until the client closes the connection or the fake is closed: a reply that
// never comes.
func (r *Request) Hang() {
	closed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, r.conn); close(closed) }()
	select {
	case <-closed:
	case <-r.done:
	}
	_ = r.conn.Close()
}

// Handler scripts the fake's answer to one request. After it returns the connection stays
// open inside an IDSESSION (unless the handler closed it) and is closed otherwise.
type Handler func(*Request)

// Fake is a loopback server that speaks enough of the clamd protocol to read commands and
// INSTREAM data, and answers as its Handler says.
type Fake struct {
	ln       net.Listener
	handler  Handler
	conns    atomic.Int64
	requests atomic.Int64
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     map[net.Conn]struct{}
}

// maxFakeStream bounds what the fake accepts in one INSTREAM.
const maxFakeStream = 64 << 20

// StartFake starts a fake clamd on a loopback TCP port; it stops when the test ends. The
// handler sees every command (PING and VERSION too) except IDSESSION and END.
func StartFake(t testing.TB, h Handler) *Fake {
	t.Helper()
	f, err := NewFake(h)
	if err != nil {
		t.Fatalf("clamdtest: %v", err)
	}
	t.Cleanup(f.Close)
	return f
}

// NewFake starts a fake clamd outside a test (an Example); the caller must Close it.
func NewFake(h Handler) (*Fake, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &Fake{ln: ln, handler: h, done: make(chan struct{}), open: map[net.Conn]struct{}{}}
	f.wg.Go(f.serve)
	return f, nil
}

// Addr returns the fake's address as "tcp:127.0.0.1:PORT".
func (f *Fake) Addr() string { return "tcp:" + f.ln.Addr().String() }

// Conns returns the number of connections accepted so far.
func (f *Fake) Conns() int { return int(f.conns.Load()) }

// Requests returns the number of requests handled so far.
func (f *Fake) Requests() int { return int(f.requests.Load()) }

// Close stops the fake and closes every connection.
func (f *Fake) Close() {
	select {
	case <-f.done:
		return
	default:
	}
	close(f.done)
	_ = f.ln.Close()
	f.mu.Lock()
	for c := range f.open {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *Fake) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.conns.Add(1)
		f.mu.Lock()
		f.open[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Go(func() {
			defer func() {
				f.mu.Lock()
				delete(f.open, c)
				f.mu.Unlock()
				_ = c.Close()
			}()
			f.handle(c)
		})
	}
}

func (f *Fake) handle(c net.Conn) {
	br := bufio.NewReader(c)
	session, id := false, 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		cmd, err := readCommand(br)
		if err != nil {
			return
		}
		switch cmd {
		case "IDSESSION":
			session = true
			continue
		case "END":
			return
		}
		req := &Request{Command: cmd, conn: c, done: f.done}
		if session {
			id++
			req.ID = id
		}
		if cmd == "INSTREAM" {
			if req.Body, err = readStream(br); err != nil {
				return
			}
		}
		f.requests.Add(1)
		f.handler(req)
		if !session {
			return
		}
	}
}

func readCommand(br *bufio.Reader) (string, error) {
	line, err := br.ReadString(0)
	if err != nil {
		return "", err
	}
	if len(line) > 64 || !strings.HasPrefix(line, "z") {
		return "", fmt.Errorf("fake clamd: bad command %q", line)
	}
	return strings.TrimSuffix(line[1:], "\x00"), nil
}

func readStream(br *bufio.Reader) ([]byte, error) {
	var body []byte
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			return body, nil
		}
		if len(body)+int(n) > maxFakeStream {
			return nil, errors.New("fake clamd: stream too large")
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(br, body[start:]); err != nil {
			return nil, err
		}
	}
}
