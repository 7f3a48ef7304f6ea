package virus

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/internal/idle"
)

// daemon is one clamd: its address, its idle session connections and its circuit breaker.
type daemon struct {
	addr             string // as configured, used in results and errors
	network, address string
	cfg              *Config

	idle idle.Stack[*conn] // session connections

	mu        sync.Mutex
	failures  int       // consecutive failures
	openUntil time.Time // out of rotation until then (zero: in rotation)
	probing   bool      // a half-open probe is in flight
}

// conn is one connection to clamd, possibly inside an IDSESSION.
type conn struct {
	nc       net.Conn
	br       *bufio.Reader
	session  bool
	lastID   uint64 // request number of the last command sent in the session
	lastUsed time.Time
}

func (c *conn) close() { _ = c.nc.Close() }

var (
	cmdIDSession = []byte("zIDSESSION\x00")
	cmdInstream  = []byte("zINSTREAM\x00")
	cmdEnd       = []byte("zEND\x00")
)

// dial connects to the daemon and, when sessions are on, opens an IDSESSION.
func (d *daemon) dial(ctx context.Context, session bool) (*conn, error) {
	dl := net.Dialer{Timeout: d.cfg.ConnectTimeout}
	nc, err := dl.DialContext(ctx, d.network, d.address)
	if err != nil {
		return nil, fmt.Errorf("clamd %s: connect: %w", d.addr, err)
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 512), session: session}
	if session {
		if err := c.write(ctx, cmdIDSession, d.cfg.WriteTimeout); err != nil {
			c.close()
			return nil, fmt.Errorf("clamd %s: IDSESSION: %w", d.addr, err)
		}
	}
	return c, nil
}

// get returns an idle session connection that is still open, or a new connection.
func (d *daemon) get(ctx context.Context) (c *conn, reused bool, err error) {
	if !d.cfg.NoSessions {
		now := time.Now()
		c, ok := d.idle.Pop(func(c *conn) bool {
			return now.Sub(c.lastUsed) < d.cfg.IdleTimeout && alive(c.nc)
		}, (*conn).close)
		if ok {
			return c, true, nil
		}
	}
	c, err = d.dial(ctx, !d.cfg.NoSessions)
	return c, false, err
}

// put keeps a session connection for the next scan, or closes it.
func (d *daemon) put(c *conn) {
	if !c.session {
		c.close()
		return
	}
	c.lastUsed = time.Now()
	if !d.idle.Push(c, d.cfg.MaxIdle) {
		c.end()
	}
}

// closeIdle closes every idle connection (ending their sessions politely).
func (d *daemon) closeIdle() {
	for _, c := range d.idle.Drain() {
		c.end()
	}
}

// end ends the session politely (END) and closes the connection.
func (c *conn) end() {
	_ = c.write(context.Background(), cmdEnd, time.Second)
	c.close()
}

// deadline returns now+timeout, or ctx's deadline when that is earlier.
func deadline(ctx context.Context, timeout time.Duration) time.Time {
	t := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(t) {
		return d
	}
	return t
}

// write writes b within timeout. The check of ctx after setting the deadline closes the
// race with the AfterFunc that poisons the deadline on cancellation.
func (c *conn) write(ctx context.Context, b []byte, timeout time.Duration) error {
	if err := c.nc.SetWriteDeadline(deadline(ctx, timeout)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	return err
}

// readLine reads one NUL-terminated reply line (without the NUL).
func (c *conn) readLine(ctx context.Context, timeout time.Duration) ([]byte, error) {
	if err := c.nc.SetReadDeadline(deadline(ctx, timeout)); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	line, err := c.br.ReadSlice(0)
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("reply longer than %d bytes", c.br.Size())
	case errors.Is(err, io.EOF) && len(line) > 0:
		return nil, fmt.Errorf("reply %q cut short: %w", truncate(line), io.ErrUnexpectedEOF)
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("connection closed before the reply: %w", io.ErrUnexpectedEOF)
	case err != nil:
		return nil, err
	}
	return line[:len(line)-1], nil
}

// sourceError marks a failure to read the message being scanned: not the daemon's fault,
// so it neither counts against the daemon nor triggers failover.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "reading the message: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// scan streams r to the daemon with INSTREAM (clamd(8): "zINSTREAM\0", then chunks each
// prefixed by a 4-byte big-endian length, then a zero-length chunk) and reads the verdict.
// buf is the chunk buffer, at least ChunkSize+len(cmdInstream)+8 bytes. reused reports
// whether the connection came from the idle pool; n counts the bytes read from r.
func (d *daemon) scan(ctx context.Context, r io.Reader, buf []byte) (rep Reply, reused bool, n int64, err error) {
	c, reused, err := d.get(ctx)
	if err != nil {
		return rep, false, 0, err
	}
	// Cancelling ctx unblocks any read or write in progress.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	keep := false
	defer func() {
		if !stop() {
			keep = false // ctx fired: the deadline is poisoned
		}
		if keep {
			d.put(c)
		} else {
			c.close()
		}
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
	}()

	// The first write carries the command, every write carries one chunk header and its
	// data, the last one also the terminator: a small message takes one write.
	off := copy(buf, cmdInstream)
	chunk := int(d.cfg.ChunkSize)
	for {
		m, rerr := io.ReadFull(r, buf[off+4:off+4+chunk])
		n += int64(m)
		if d.cfg.MaxSize > 0 && n > int64(d.cfg.MaxSize) {
			return rep, reused, n, fmt.Errorf("%w: more than %d bytes (max_size)", ErrTooLarge, d.cfg.MaxSize)
		}
		end := off
		if m > 0 {
			binary.BigEndian.PutUint32(buf[off:], uint32(m))
			end = off + 4 + m
		}
		last := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if rerr != nil && !last {
			return rep, reused, n, &sourceError{rerr}
		}
		if last {
			binary.BigEndian.PutUint32(buf[end:], 0)
			end += 4
		}
		if werr := c.write(ctx, buf[:end], d.cfg.WriteTimeout); werr != nil {
			// clamd stops reading and answers at once when the stream exceeds its
			// StreamMaxLength; look for that answer before blaming the connection.
			if line, lerr := c.readLine(ctx, time.Second); lerr == nil {
				if rep, perr := ParseReply(line); perr == nil && rep.Kind == ReplySizeLimit {
					return rep, reused, n, nil
				}
			}
			return rep, reused, n, fmt.Errorf("clamd %s: INSTREAM after %d bytes: %w", d.addr, n, werr)
		}
		if last {
			break
		}
		off = 0
	}
	if c.session {
		c.lastID++
	}
	line, err := c.readLine(ctx, d.cfg.ReplyTimeout)
	if err != nil {
		return rep, reused, n, fmt.Errorf("clamd %s: INSTREAM reply: %w", d.addr, err)
	}
	rep, err = ParseReply(line)
	if err != nil {
		return rep, reused, n, fmt.Errorf("clamd %s: %w", d.addr, err)
	}
	if c.session && rep.ID != c.lastID {
		return rep, reused, n, fmt.Errorf("clamd %s: reply %q answers request %d, want %d", d.addr, truncate(line), rep.ID, c.lastID)
	}
	// clamd closes the connection after an error, even inside a session. After FOUND,
	// AllMatchScans may have more FOUND lines queued: a fresh connection is cheaper than
	// guessing (infected messages are rare).
	keep = rep.Kind == ReplyOK
	return rep, reused, n, nil
}

// command sends a one-line command (PING, VERSION) on a fresh connection and returns the
// reply line.
func (d *daemon) command(ctx context.Context, cmd string) (string, error) {
	c, err := d.dial(ctx, false)
	if err != nil {
		return "", err
	}
	defer c.close()
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.write(ctx, []byte("z"+cmd+"\x00"), d.cfg.WriteTimeout); err != nil {
		return "", fmt.Errorf("clamd %s: %s: %w", d.addr, cmd, err)
	}
	line, err := c.readLine(ctx, d.cfg.ConnectTimeout+d.cfg.WriteTimeout)
	if err != nil {
		return "", fmt.Errorf("clamd %s: %s reply: %w", d.addr, cmd, err)
	}
	for _, b := range line {
		if b < 0x20 || b == 0x7f {
			return "", fmt.Errorf("clamd %s: %s reply %s contains a control character", d.addr, cmd, strconv.Quote(truncate(line)))
		}
	}
	return string(line), nil
}

// ping checks that the daemon answers PONG.
func (d *daemon) ping(ctx context.Context) error {
	line, err := d.command(ctx, "PING")
	if err != nil {
		return err
	}
	if line != "PONG" {
		return fmt.Errorf("clamd %s: PING answered %q, want PONG", d.addr, line)
	}
	return nil
}

// Breaker: a daemon with FailureThreshold consecutive failures leaves the rotation for
// Cooldown; after that one caller at a time may probe it with PING (half-open).

// usable reports whether the daemon is in rotation; probe is true when the caller was
// granted the half-open probe and must PING first.
func (d *daemon) usable(now time.Time) (ok, probe bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.openUntil.IsZero() {
		return true, false
	}
	if now.Before(d.openUntil) || d.probing {
		return false, false
	}
	d.probing = true
	return true, true
}

func (d *daemon) success() {
	d.mu.Lock()
	d.failures, d.openUntil, d.probing = 0, time.Time{}, false
	d.mu.Unlock()
}

func (d *daemon) failure(now time.Time) {
	d.mu.Lock()
	d.failures++
	d.probing = false
	tripped := false
	if d.failures >= d.cfg.FailureThreshold {
		tripped = d.openUntil.IsZero() || !now.Before(d.openUntil)
		d.openUntil = now.Add(d.cfg.Cooldown)
	}
	d.mu.Unlock()
	if tripped {
		d.closeIdle()
	}
}

// endProbe releases a half-open probe that ended without a verdict on the daemon (the
// caller's context was cancelled).
func (d *daemon) endProbe() {
	d.mu.Lock()
	d.probing = false
	d.mu.Unlock()
}
