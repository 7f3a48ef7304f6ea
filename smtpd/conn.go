package smtpd

import (
	"bytes"
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
//   - in command mode the next command line must be complete within CommandTimeout of our
//     last reply (every reply is a Write, so the clock restarts per command): a whole-line
//     deadline, which bytes dripped one at a time do not extend;
//   - before the first HELO/EHLO/LHLO, within HeloTimeout of the greeting as well;
//   - in data mode each read must complete within CommandTimeout of the previous one, and
//     the whole transfer within DataTimeout;
//   - everything within SessionTimeout of the connect.
//
// A deadline that passes ends the session. go-smtp's line reader hands over a partial line
// when a read fails (bufio.Reader.ReadLine returns the bytes it has and no error), so a
// client that dripped "NOOP" without its CRLF used to get "250", a fresh deadline, and
// could go on for ever (or for four deadlines, when the partial line was junk and go-smtp's
// own error limit closed it). So a timeout is sticky: every later read fails the same way;
// when the client was in the middle of a line, nothing go-smtp answers to it goes out
// (we write the 421 ourselves where the connection is plaintext) and the session
// callbacks refuse it (connState.command).
//
// It also lets the server end a session from the outside: kill makes the next read
// return EOF (after the reply that says why has been written), and shutdown makes an
// idle session's read time out so that go-smtp answers 421 and closes.
type conn struct {
	net.Conn
	st *connState

	cmdTimeout time.Duration
	sessionEnd time.Time
	// heloBy is when the first HELO/EHLO/LHLO must have arrived (zero: no such bound);
	// heloDone is set when it has.
	heloBy   time.Time
	heloDone atomic.Bool

	mu         sync.Mutex
	lastWrite  time.Time
	unanswered bool      // bytes were read since the last write (the client is mid-command)
	dataEnd    time.Time // zero outside DATA
	readBusy   bool      // a Read is blocked waiting for the client

	killed   atomic.Bool
	timedOut atomic.Bool // a read deadline passed: the session is over (see above)
	mute     atomic.Bool // drop whatever go-smtp writes next and close
	tlsUp    atomic.Bool // TLS runs above this conn: what we write here is not seen as SMTP
	closed   atomic.Bool
	done     chan struct{} // closed by Close
	onClose  func()
	// xc, when set, takes XCLIENT commands out of the stream (xclient.go); set before
	// go-smtp starts on plaintext mx and submission listeners.
	xc *xclientState
}

// errShutdown is returned to go-smtp's reader when the server shuts down; it is a
// timeout so that go-smtp answers "421 4.4.2" before closing.
type shutdownError struct{}

func (shutdownError) Error() string   { return "smtpd: server shutting down" }
func (shutdownError) Timeout() bool   { return true }
func (shutdownError) Temporary() bool { return true }

func (c *conn) Read(b []byte) (int, error) {
	if c.xc != nil {
		return c.readXclient(b)
	}
	return c.readRaw(b)
}

// readRaw reads from the client under the deadlines described above.
func (c *conn) readRaw(b []byte) (int, error) {
	if c.killed.Load() {
		return 0, io.EOF
	}
	if c.timedOut.Load() {
		return 0, os.ErrDeadlineExceeded
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
		if !c.heloBy.IsZero() && !c.heloDone.Load() && c.heloBy.Before(dl) {
			dl = c.heloBy
		}
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
	if n > 0 {
		c.unanswered = true
	}
	partial := c.unanswered && c.dataEnd.IsZero()
	c.mu.Unlock()
	if err != nil && isTimeout(err) {
		c.timedOut.Store(true)
		if partial {
			// The client sent part of a command line and no more: go-smtp is about to
			// execute what it has. Nothing it writes goes out; over plaintext we say why.
			c.mute.Store(true)
			if !c.tlsUp.Load() {
				_ = c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.WriteString(c.Conn, replyLineTimeout)
			}
		}
	}
	return n, err
}

// replyLineTimeout ends a session whose command line was not complete in time.
const replyLineTimeout = "421 4.4.2 " + lineTimeoutText + "\r\n"

// lineTimeoutText is the text of both ways a session ends for a late command line: the
// reply written beneath go-smtp (replyLineTimeout) and errTimeout.
const lineTimeoutText = "Timeout: the command line was not complete in time, closing connection"

// startTLSReply is what go-smtp answers to STARTTLS before the handshake; from then on
// the bytes below it are TLS records.
var startTLSReply = []byte("220 2.0.0 Ready to start TLS")

// ehloPipelining is the first keyword line of go-smtp's EHLO reply.
var ehloPipelining = []byte("250-PIPELINING\r\n")

func (c *conn) Write(b []byte) (int, error) {
	if c.mute.Load() {
		c.Close()
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	c.lastWrite = time.Now()
	c.unanswered = false
	c.mu.Unlock()
	if c.xc != nil && c.xc.allowed.Load() && !c.tlsUp.Load() && bytes.HasPrefix(b, ehloPipelining) {
		// go-smtp's EHLO reply, one line per Write, lists PIPELINING first: announce
		// XCLIENT before it to a client that may use it.
		if _, err := c.Conn.Write(xclientEHLO); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(b)
	if !c.tlsUp.Load() && bytes.HasPrefix(b, startTLSReply) {
		c.tlsUp.Store(true)
	}
	return n, err
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
