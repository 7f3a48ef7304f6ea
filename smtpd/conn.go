package smtpd

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// conn wraps each accepted connection, below TLS. go-smtp's ReadTimeout is one absolute
// deadline per command that also bounds the whole DATA transfer, so we leave it unset and
// manage deadlines here instead:
//
//   - in command mode a read must complete within CommandTimeout of our last reply (every
//     reply is a Write, so the clock restarts per command);
//   - in data mode each read must complete within CommandTimeout of the previous one, and
//     the whole transfer within DataTimeout;
//   - everything within SessionTimeout of the connect.
//
// It also lets the server end a session from the outside: kill makes the next read
// return EOF (after the reply that says why has been written), and shutdown makes an
// idle session's read time out so that go-smtp answers 421 and closes.
type conn struct {
	net.Conn
	st *connState

	cmdTimeout time.Duration
	sessionEnd time.Time

	mu        sync.Mutex
	lastWrite time.Time
	dataEnd   time.Time // zero outside DATA
	readBusy  bool      // a Read is blocked waiting for the client

	killed  atomic.Bool
	closed  atomic.Bool
	done    chan struct{} // closed by Close
	onClose func()
}

// errShutdown is returned to go-smtp's reader when the server shuts down; it is a
// timeout so that go-smtp answers "421 4.4.2" before closing.
type shutdownError struct{}

func (shutdownError) Error() string   { return "smtpd: server shutting down" }
func (shutdownError) Timeout() bool   { return true }
func (shutdownError) Temporary() bool { return true }

func (c *conn) Read(b []byte) (int, error) {
	if c.killed.Load() {
		return 0, io.EOF
	}
	c.mu.Lock()
	if c.st != nil && c.st.srv.closing.Load() && !c.st.inTxn.Load() {
		c.mu.Unlock()
		return 0, shutdownError{}
	}
	now := time.Now()
	var dl time.Time
	if c.dataEnd.IsZero() {
		dl = c.lastWrite.Add(c.cmdTimeout)
		if dl.Before(now) {
			dl = now // overdue: fail on the next read that would block
		}
	} else {
		dl = now.Add(c.cmdTimeout)
		if c.dataEnd.Before(dl) {
			dl = c.dataEnd
		}
	}
	if !c.sessionEnd.IsZero() && c.sessionEnd.Before(dl) {
		dl = c.sessionEnd
	}
	_ = c.Conn.SetReadDeadline(dl)
	c.readBusy = true
	c.mu.Unlock()

	n, err := c.Conn.Read(b)

	c.mu.Lock()
	c.readBusy = false
	c.mu.Unlock()
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.lastWrite = time.Now()
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// setData switches data mode on (a non-zero end) or off.
func (c *conn) setData(end time.Time) {
	c.mu.Lock()
	c.dataEnd = end
	c.mu.Unlock()
}

// interruptIdle makes a read that is blocked between transactions return at once.
func (c *conn) interruptIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readBusy && (c.st == nil || !c.st.inTxn.Load()) {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
}

// SetReadDeadline is ignored: deadlines are ours (crypto/tls and go-proxyproto set their
// own during handshakes, which our per-read deadline supersedes).
func (c *conn) SetReadDeadline(time.Time) error { return nil }

// SetDeadline only forwards the write half.
func (c *conn) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }

func (c *conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.Conn.Close()
	if c.done != nil {
		close(c.done)
	}
	if c.onClose != nil {
		c.onClose()
	}
	return err
}

// netConnOf finds our conn under go-smtp's connection (a *tls.Conn after STARTTLS or on
// an implicit-TLS port).
func netConnOf(nc net.Conn) *conn {
	for range 4 {
		switch x := nc.(type) {
		case *conn:
			return x
		case *tls.Conn:
			nc = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// isTimeout reports whether err is a deadline error.
func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return true
	}
	return os.IsTimeout(err)
}
