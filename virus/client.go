package virus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors a scan can end with. Test them with errors.Is.
var (
	// ErrUnavailable means no daemon could scan the message; treat it as "not scanned".
	ErrUnavailable = errors.New("no clamd could scan the message")
	// ErrTooLarge means the message exceeds the daemon's StreamMaxLength or MaxSize.
	ErrTooLarge = errors.New("message exceeds the scanner's size limit")
)

// Result is the verdict on one message.
type Result struct {
	// Infected is true when a signature matched.
	Infected bool
	// Signature names the matching signature, as clamd reported it.
	Signature string
	// Daemon is the address of the daemon that gave the verdict.
	Daemon string
	// Size is the number of bytes streamed.
	Size int64
}

// Client scans messages with a set of clamd daemons. It is safe for concurrent use.
type Client struct {
	cfg     Config
	daemons []*daemon
	next    atomic.Uint64
	bufs    sync.Pool
}

// NewClient returns a client for the daemons in cfg.Addrs. It does no I/O: daemons are
// contacted on the first scan or ping.
func NewClient(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("virus: no clamd address configured (addrs)")
	}
	if len(cfg.Addrs) > maxDaemons {
		return nil, fmt.Errorf("virus: %d clamd addresses, at most %d", len(cfg.Addrs), maxDaemons)
	}
	if cfg.ChunkSize > maxChunkSize {
		return nil, fmt.Errorf("virus: chunk_size %d exceeds %d", cfg.ChunkSize, maxChunkSize)
	}
	c := &Client{cfg: cfg}
	for _, a := range cfg.Addrs {
		network, address, err := parseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("virus: %w", err)
		}
		c.daemons = append(c.daemons, &daemon{addr: a, network: network, address: address, cfg: &c.cfg})
	}
	size := int(cfg.ChunkSize) + len(cmdInstream) + 8
	c.bufs.New = func() any { b := make([]byte, size); return &b }
	return c, nil
}

// Config returns the client's configuration with defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// Close closes idle connections. The client stays usable.
func (c *Client) Close() error {
	for _, d := range c.daemons {
		d.closeIdle()
	}
	return nil
}

// Scan streams r to a daemon and returns its verdict. On a daemon failure it fails over to
// the next daemon; when r was partly consumed by then, failover needs r to be an
// io.Seeker (an *os.File, a *bytes.Reader, an *io.SectionReader), otherwise the scan ends
// with ErrUnavailable. The errors are ErrTooLarge, ErrUnavailable (wrapping the causes),
// or an error reading r.
func (c *Client) Scan(ctx context.Context, r io.Reader) (Result, error) {
	if r == nil {
		return Result{}, fmt.Errorf("virus: scan: nil reader")
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	seeker, _ := r.(io.Seeker)
	var start int64
	if seeker != nil {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)

	var errs []error
	for _, d := range c.order() {
		if ok, probe := d.usable(time.Now()); !ok {
			errs = append(errs, fmt.Errorf("clamd %s: out of rotation after %d failures", d.addr, c.cfg.FailureThreshold))
			continue
		} else if probe {
			if err := d.ping(ctx); err != nil {
				c.fail(ctx, d)
				errs = append(errs, err)
				continue
			}
		}
		var (
			rep    Reply
			n      int64
			err    error
			rewind bool
		)
		// A pooled session may have died in a way the liveness check missed: one retry
		// on a fresh connection before blaming the daemon.
		for attempt := 0; attempt < 2; attempt++ {
			var reused bool
			rep, reused, n, err = d.scan(ctx, r, *bp)
			if err == nil && rep.Kind == ReplyError {
				err = fmt.Errorf("clamd %s: %s", d.addr, rep.Message)
			}
			rewind = n == 0
			if err != nil && !rewind && seeker != nil {
				_, serr := seeker.Seek(start, io.SeekStart)
				rewind = serr == nil
			}
			// A timeout means a hung daemon, not a dead pooled session: retrying would
			// only double the wait.
			if err == nil || !reused || !rewind || ctx.Err() != nil || isTerminal(err) || isTimeout(err) {
				break
			}
		}
		var se *sourceError
		switch {
		case errors.As(err, &se):
			d.endProbe()
			return Result{}, fmt.Errorf("virus: scan: %w", err)
		case errors.Is(err, ErrTooLarge):
			d.endProbe()
			return Result{Daemon: d.addr, Size: n}, fmt.Errorf("virus: %w", err)
		case err != nil:
			errs = append(errs, err)
			c.fail(ctx, d)
			if ctx.Err() != nil || !rewind {
				return Result{}, fmt.Errorf("virus: %w: %w", ErrUnavailable, errors.Join(errs...))
			}
			continue
		}
		d.success()
		switch rep.Kind {
		case ReplySizeLimit:
			return Result{Daemon: d.addr, Size: n}, fmt.Errorf("virus: clamd %s: %w: %s", d.addr, ErrTooLarge, rep.Message)
		case ReplyFound:
			return Result{Infected: true, Signature: rep.Signature, Daemon: d.addr, Size: n}, nil
		}
		return Result{Daemon: d.addr, Size: n}, nil
	}
	return Result{}, fmt.Errorf("virus: %w: %w", ErrUnavailable, errors.Join(errs...))
}

// isTerminal reports errors that another attempt cannot fix.
func isTerminal(err error) bool {
	var se *sourceError
	return errors.As(err, &se) || errors.Is(err, ErrTooLarge)
}

// fail records a failure of d unless the caller gave up (its context, not the scan's
// timeout, ended).
func (c *Client) fail(ctx context.Context, d *daemon) {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		d.endProbe()
		return
	}
	d.failure(time.Now())
}

// order returns the daemons starting at the next one in round-robin order.
func (c *Client) order() []*daemon {
	n := len(c.daemons)
	if n == 1 {
		return c.daemons
	}
	i := int(c.next.Add(1) % uint64(n))
	out := make([]*daemon, 0, n)
	out = append(out, c.daemons[i:]...)
	return append(out, c.daemons[:i]...)
}

// DaemonStatus is the health of one daemon.
type DaemonStatus struct {
	Addr string
	// Version is the daemon's VERSION reply ("ClamAV 1.4.6/27000/..."), set by Ping.
	Version string
	// RTT is the round trip of the PING, set by Ping.
	RTT time.Duration
	// Err is the PING's error, or nil.
	Err error
	// InRotation is false while the breaker keeps the daemon out.
	InRotation bool
	// Failures counts consecutive failures.
	Failures int
}

// Ping sends PING and VERSION to every daemon concurrently, updates their breakers (a
// PONG brings a daemon back into rotation) and reports their status in Addrs order.
func (c *Client) Ping(ctx context.Context) []DaemonStatus {
	out := make([]DaemonStatus, len(c.daemons))
	var wg sync.WaitGroup
	for i, d := range c.daemons {
		wg.Go(func() {
			t := time.Now()
			err := d.ping(ctx)
			st := DaemonStatus{Addr: d.addr, RTT: time.Since(t), Err: err}
			if err == nil {
				d.success()
				if v, verr := d.command(ctx, "VERSION"); verr == nil {
					st.Version = v
				}
			} else if ctx.Err() == nil {
				d.failure(time.Now())
			}
			d.mu.Lock()
			st.InRotation = d.openUntil.IsZero()
			st.Failures = d.failures
			d.mu.Unlock()
			out[i] = st
		})
	}
	wg.Wait()
	return out
}

// RunHealthChecks pings every daemon each interval until ctx ends, so that a daemon that
// failed is back in rotation as soon as it answers, and a dead one leaves it before a
// message has to wait for it.
func (c *Client) RunHealthChecks(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout+c.cfg.WriteTimeout)
			c.Ping(pctx)
			cancel()
		}
	}
}

// isTimeout reports whether err is a deadline expiry on the connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
