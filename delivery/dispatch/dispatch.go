// Package dispatch connects the routing maps (delivery/route) and the delivery clients
// (delivery/lmtp, delivery/relay, a local deliverer) to the queue manager: Dispatcher
// implements delivery.Router, and each route's Transport is delivery.Transport.
//
// A recipient that resolves to one final address is routed to that address's transport.
// One that expands to several (an alias list) is handled as Postfix's local(8) forwards
// an alias: a copy of the message for the expanded addresses is queued again (Reinject,
// usually spool.Enqueue) and the original recipient counts as delivered once the copy is
// durable, so every expanded recipient then gets its own retries and bounces.
package dispatch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/internal/smtpconn"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/spool"
)

// Config holds the collaborators. Router is required; a transport left nil fails the
// recipients routed to it (temporarily: a configuration fix lets them through).
type Config struct {
	Router *route.Router
	// Local delivers route.Local recipients (*local.Deliverer: the mail store).
	Local LocalDeliverer
	// LMTP delivers route.LMTP recipients.
	LMTP *lmtp.Client
	// Relay delivers route.SMTP recipients.
	Relay *relay.Client
	// Reinject queues a copy of a message for the expansion of an alias (spool.Enqueue).
	Reinject func(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error)
	// MaxMessageBytes bounds a message read into memory when the queue's reader cannot be
	// read at an offset. [64 MiB]
	MaxMessageBytes int64
}

// LocalDeliverer delivers a message to one local recipient. An error that
// delivery.IsPermanent reports fails the recipient; any other error defers it.
type LocalDeliverer interface {
	Deliver(ctx context.Context, rcpt string, env spool.Envelope, msg io.Reader) error
}

// BatchDeliverer is a LocalDeliverer that can take all the local recipients of a
// message at once (mailhost: one LMTP transaction per back-end instead of one per
// recipient). The results are in rcpts' order.
type BatchDeliverer interface {
	DeliverAll(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []delivery.Result
}

// Dispatcher is the queue's Router.
type Dispatcher struct {
	cfg   Config
	local delivery.Transport
}

// New returns a Dispatcher. It does no I/O.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Router == nil {
		return nil, errors.New("dispatch: no router")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 64 << 20
	}
	d := &Dispatcher{cfg: cfg}
	if cfg.Local != nil {
		d.local = localTransport{cfg.Local}
	}
	return d, nil
}

var _ delivery.Router = (*Dispatcher)(nil)

// Route resolves rcpt and returns its transport.
func (d *Dispatcher) Route(ctx context.Context, rcpt string) (delivery.Route, error) {
	dests, err := d.cfg.Router.Resolve(ctx, rcpt)
	if err != nil {
		return delivery.Route{}, resolveErr(err)
	}
	switch len(dests) {
	case 0:
		return delivery.Route{}, delivery.Permanent("554 5.4.6 <"+rcpt+"> expands to no recipient", nil)
	case 1:
		return d.route(dests[0])
	}
	return delivery.Route{Transport: &expander{d: d}, Dest: "expand"}, nil
}

func resolveErr(err error) error {
	var re *route.ResolveError
	if errors.As(err, &re) && !re.Temporary {
		return delivery.Permanent(re.Reply, err)
	}
	return err
}

func (d *Dispatcher) route(dst route.Destination) (delivery.Route, error) {
	r := delivery.Route{Dest: dst.Dest(), Rcpt: dst.Rcpt}
	switch dst.Kind {
	case route.Local:
		if d.local == nil {
			return r, fmt.Errorf("dispatch: no local delivery configured for <%s>", dst.Rcpt)
		}
		r.Transport = d.local
	case route.LMTP:
		if d.cfg.LMTP == nil {
			return r, fmt.Errorf("dispatch: no LMTP client configured for <%s>", dst.Rcpt)
		}
		r.Transport = &clientTransport{d: d, dest: dst.NextHop, deliver: d.cfg.LMTP.Deliver}
	case route.SMTP:
		if d.cfg.Relay == nil {
			return r, fmt.Errorf("dispatch: no SMTP relay configured for <%s>", dst.Rcpt)
		}
		rc := d.cfg.Relay
		r.Transport = &clientTransport{d: d, dest: dst.NextHop, relay: rc}
	case route.Error:
		if strings.HasPrefix(dst.Reply, "4") {
			return r, errors.New(dst.Reply)
		}
		return r, delivery.Permanent(dst.Reply, nil)
	default:
		return r, fmt.Errorf("dispatch: unknown transport %q", dst.Kind)
	}
	return r, nil
}

// localTransport hands each recipient to a LocalDeliverer.
type localTransport struct{ local LocalDeliverer }

// Deliver delivers to each recipient in turn, reading msg from its start each time, or
// to all at once when the deliverer can.
func (t localTransport) Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []delivery.Result {
	if b, ok := t.local.(BatchDeliverer); ok {
		return b.DeliverAll(ctx, env, rcpts, msg)
	}
	rs, seekable := msg.(io.ReadSeeker)
	out := make([]delivery.Result, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
		if seekable {
			if _, err := rs.Seek(0, io.SeekStart); err != nil {
				out[i].Err = err
				continue
			}
		} else if i > 0 {
			out[i].Err = errors.New("dispatch: message reader cannot be rewound")
			continue
		}
		out[i].Err = t.local.Deliver(ctx, r, env, msg)
		if out[i].Err == nil {
			out[i].Reply = "250 2.0.0 delivered to mailbox"
		}
	}
	return out
}

// clientTransport adapts lmtp.Client.Deliver and relay.Client.Deliver.
type clientTransport struct {
	d       *Dispatcher
	dest    string
	deliver func(ctx context.Context, dest, from string, rcpts []string, msg io.ReaderAt, size int64) ([]smtpconn.Result, error)
	relay   *relay.Client // set instead of deliver: SMTP, with the DSN parameters passed on
}

func (t *clientTransport) Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []delivery.Result {
	out := make([]delivery.Result, len(rcpts))
	ra, size, err := delivery.ReaderAt(msg, t.d.cfg.MaxMessageBytes)
	if err != nil {
		for i, r := range rcpts {
			out[i] = delivery.Result{Rcpt: r, Err: err}
		}
		return out
	}
	from, err := t.d.cfg.Router.RewriteSender(ctx, env.From)
	if err != nil {
		for i, r := range rcpts {
			out[i] = delivery.Result{Rcpt: r, Err: err}
		}
		return out
	}
	var res []smtpconn.Result
	if t.relay != nil {
		dsn := &relay.DSN{Ret: env.Ret, EnvID: env.EnvID, Notify: env.Notify}
		res, _ = t.relay.DeliverDSN(ctx, t.dest, from, rcpts, ra, size, dsn)
	} else {
		res, _ = t.deliver(ctx, t.dest, from, rcpts, ra, size)
	}
	for i, r := range rcpts {
		if i >= len(res) {
			out[i] = delivery.Result{Rcpt: r, Err: fmt.Errorf("dispatch: no result for <%s>", r)}
			continue
		}
		out[i] = result(r, res[i])
	}
	return out
}

// result converts a client result into the queue's.
func result(rcpt string, r smtpconn.Result) delivery.Result {
	out := delivery.Result{Rcpt: rcpt, Reply: r.Reply}
	switch r.Status {
	case smtpconn.Delivered:
	case smtpconn.Permanent:
		out.Err = delivery.Permanent(r.Reply, r.Err)
	default:
		out.Err = r.Err
		if out.Err == nil {
			out.Err = errors.New(r.Reply)
		}
	}
	return out
}

// expander queues a copy of the message for the expansion of each recipient.
type expander struct{ d *Dispatcher }

func (e *expander) Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []delivery.Result {
	out := make([]delivery.Result, len(rcpts))
	ra, size, err := delivery.ReaderAt(msg, e.d.cfg.MaxMessageBytes)
	for i, rcpt := range rcpts {
		out[i].Rcpt = rcpt
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i] = e.expand(ctx, env, rcpt, ra, size)
	}
	return out
}

// expand delivers one recipient that expands to several addresses: directly to itself
// when it is among them (an alias that keeps a copy), then a copy to the others.
func (e *expander) expand(ctx context.Context, env spool.Envelope, rcpt string, ra io.ReaderAt, size int64) delivery.Result {
	res := delivery.Result{Rcpt: rcpt}
	if e.d.cfg.Reinject == nil {
		res.Err = fmt.Errorf("dispatch: <%s> expands to several recipients but no Reinject is configured", rcpt)
		return res
	}
	// Like Postfix's local(8): a copy that comes back to the same alias is a loop.
	if hasDeliveredTo(io.NewSectionReader(ra, 0, size), rcpt) {
		res.Err = delivery.Permanent("554 5.4.6 mail forwarding loop for <"+rcpt+">", nil)
		return res
	}
	addrs, err := e.d.cfg.Router.Expand(ctx, rcpt)
	if err != nil {
		res.Err = resolveErr(err)
		return res
	}
	var others []string
	self := false
	for _, a := range addrs {
		if strings.EqualFold(a, rcpt) {
			self = true
		} else {
			others = append(others, a)
		}
	}
	if self {
		dst, err := e.d.cfg.Router.Route(ctx, rcpt)
		if err != nil {
			res.Err = resolveErr(err)
			return res
		}
		rt, err := e.d.route(dst)
		if err != nil {
			res.Err = err
			return res
		}
		r := rt.Transport.Deliver(ctx, env, []string{dst.Rcpt}, io.NewSectionReader(ra, 0, size))
		if len(r) != 1 || r[0].Err != nil {
			if len(r) == 1 {
				r[0].Rcpt = rcpt
				return r[0]
			}
			res.Err = fmt.Errorf("dispatch: no result for <%s>", rcpt)
			return res
		}
	}
	if len(others) == 0 {
		res.Reply = "250 2.0.0 delivered"
		return res
	}
	cp := spool.Envelope{
		From: env.From, To: others, ReceivedAt: env.ReceivedAt, Listener: "alias",
		ClientIP: env.ClientIP, HELO: env.HELO, AuthUser: env.AuthUser, Tags: env.Tags, Score: env.Score,
		EnvID: env.EnvID, Ret: env.Ret,
	}
	if n, ok := env.Notify[rcpt]; ok {
		cp.Notify = map[string]string{}
		for _, a := range others {
			cp.Notify[a] = n
		}
	}
	hdr := "Delivered-To: " + rcpt + "\r\n"
	id, err := e.d.cfg.Reinject(ctx, cp, io.MultiReader(strings.NewReader(hdr), io.NewSectionReader(ra, 0, size)))
	if err != nil {
		res.Err = fmt.Errorf("dispatch: queueing the expansion of <%s>: %w", rcpt, err)
		return res
	}
	res.Reply = fmt.Sprintf("250 2.1.5 expanded to %d recipients, queued as %s", len(others), id)
	return res
}

// hasDeliveredTo reports whether the message header has "Delivered-To: rcpt".
func hasDeliveredTo(r io.Reader, rcpt string) bool {
	br := bufio.NewReader(io.LimitReader(r, 1<<20))
	for {
		line, err := br.ReadString('\n')
		l := strings.TrimRight(line, "\r\n")
		if l == "" {
			return false
		}
		if name, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Delivered-To") && strings.EqualFold(strings.TrimSpace(v), rcpt) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
