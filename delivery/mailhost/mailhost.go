package mailhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/delivery/internal/smtpconn"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/spool"
)

// Directory is what the Deliverer asks of the directory (directory.Directory, usually
// behind its cache).
type Directory interface {
	Lookup(ctx context.Context, address string) (directory.User, error)
}

// Config says how to reach the mail hosts.
type Config struct {
	// Hosts maps a mail host to its addresses (the directory section's hosts,
	// default_host and convention).
	Hosts directory.Config
	// RecipientDelimiter separates an address's extension ("+" in user+tag@domain): the
	// user is looked up without it, and the back-end gets the address with it. ["+"]
	RecipientDelimiter string
	// MaxMessageBytes bounds a message read into memory when the queue's reader cannot be
	// read at an offset. [64 MiB]
	MaxMessageBytes int64
	// MaxParallel bounds how many back-ends one message is delivered to at once. Each
	// back-end's transaction runs on its own, with the whole attempt's time, so a hung
	// back-end defers only its own recipients. [8]
	MaxParallel int
}

// Deps are the Deliverer's collaborators (all required but Logger).
type Deps struct {
	Directory Directory
	LMTP      *lmtp.Client
	Logger    *slog.Logger
}

// Deliverer delivers to the back-ends. It implements dispatch.LocalDeliverer and is safe
// for concurrent use.
type Deliverer struct {
	cfg  Config
	deps Deps
}

// New returns a Deliverer. It does no I/O.
func New(cfg Config, deps Deps) (*Deliverer, error) {
	if deps.Directory == nil || deps.LMTP == nil {
		return nil, errors.New("mailhost: a directory and an LMTP client are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 64 << 20
	}
	if cfg.RecipientDelimiter == "" {
		cfg.RecipientDelimiter = "+" // the router's default
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 8
	}
	return &Deliverer{cfg: cfg, deps: deps}, nil
}

// Exists says whether the directory has a user for address (extension removed, as
// route.Config.LocalUserExists is asked): the front-end's check at RCPT, so that mail
// for nobody is refused with 550 5.1.1 instead of bounced later. A directory that cannot
// be asked is an error (the client gets a 4xx).
func (d *Deliverer) Exists(ctx context.Context, address string) (bool, error) {
	_, err := d.deps.Directory.Lookup(ctx, address)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// Deliver delivers msg to rcpt's back-end by LMTP. The error is nil when the back-end
// took the message, a delivery.Permanent for a recipient that does not exist (here or at
// the back-end's word), and temporary otherwise.
func (d *Deliverer) Deliver(ctx context.Context, rcpt string, env spool.Envelope, msg io.Reader) error {
	return d.DeliverAll(ctx, env, []string{rcpt}, msg)[0].Err
}

// DeliverAll delivers msg to each of rcpts with one LMTP transaction per back-end: the
// recipients that live on the same mail host share one MAIL, one RCPT each and one DATA
// (RFC 2033 §4.2: one reply per accepted recipient), as Postfix's lmtp(8) batches the
// recipients of a destination, so a message to a hundred users of one store is sent
// to it once. Each result is a Deliver's for its recipient.
//
// The back-ends are delivered to concurrently (at most MaxParallel at once), each within
// ctx: in turn, a slow or hung back-end would spend the attempt's time of the back-ends
// after it, and their recipients would be deferred although their stores were healthy.
func (d *Deliverer) DeliverAll(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []delivery.Result {
	out := make([]delivery.Result, len(rcpts))
	var batches []*batch
	byAddr := map[string]*batch{}
	for i, rcpt := range rcpts {
		out[i].Rcpt = rcpt
		host, to, err := d.resolve(ctx, rcpt)
		if err != nil {
			out[i].Err = err
			continue
		}
		b := byAddr[host.LMTP]
		if b == nil {
			b = &batch{addr: host.LMTP, host: host.name}
			byAddr[host.LMTP] = b
			batches = append(batches, b)
		}
		b.to = append(b.to, to)
		b.idx = append(b.idx, i)
	}
	if len(batches) == 0 {
		return out
	}
	ra, size, err := delivery.ReaderAt(msg, d.cfg.MaxMessageBytes)
	if err != nil {
		for _, b := range batches {
			for _, i := range b.idx {
				out[i].Err = err
			}
		}
		return out
	}
	// ra is read concurrently: io.ReaderAt allows parallel ReadAt calls (the queue's is
	// an io.SectionReader over the spool file, otherwise a bytes.Reader).
	sem := make(chan struct{}, d.cfg.MaxParallel)
	var wg sync.WaitGroup
	for _, b := range batches {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.deliverBatch(ctx, env, rcpts, ra, size, b, out)
		})
	}
	wg.Wait()
	return out
}

// batch is the recipients of one back-end.
type batch struct {
	addr string // the back-end's LMTP address
	host string // the mail host's name, for the reply
	to   []string
	idx  []int // out's index of each of to
}

// deliverBatch delivers to b's recipients in one LMTP transaction and sets their results
// (out[b.idx[j]] for b.to[j]); the batches own distinct elements of out.
func (d *Deliverer) deliverBatch(ctx context.Context, env spool.Envelope, rcpts []string, ra io.ReaderAt, size int64, b *batch, out []delivery.Result) {
	res, err := d.deps.LMTP.Deliver(ctx, b.addr, env.From, b.to, ra, size)
	// A session that broke after the RCPTs (before any delivery) fails the
	// transaction, but each recipient keeps its own result: the back-end's own 5xx to
	// a recipient's RCPT still holds (that recipient bounces now, as it would have
	// alone, instead of being retried), and the others are deferred with their own
	// reason, never the error of the transaction, which names one recipient. A
	// failure to open the session is the same for every recipient
	// (smtpconn.OpenError).
	var oe *smtpconn.OpenError
	perRcpt := err != nil && !errors.As(err, &oe) && len(res) == len(b.to)
	for j, i := range b.idx {
		rcpt := rcpts[i]
		switch {
		case perRcpt:
			out[i] = d.result(rcpt, b.to[j], b.host, res[j])
		case err != nil && delivery.IsPermanent(err):
			out[i].Err = err
		case err != nil:
			out[i].Err = delivery.Temporary("451 4.4.1 <"+rcpt+">: mail host "+b.host+" unavailable", err)
		case j >= len(res):
			out[i].Err = fmt.Errorf("mailhost: %d LMTP results for %d recipients", len(res), len(b.to))
		default:
			out[i] = d.result(rcpt, b.to[j], b.host, res[j])
		}
	}
}

// route is where a recipient is delivered.
type route struct {
	directory.Host
	name string // the mail host's name
}

// resolve finds rcpt's back-end and the address it is known by there, or the error that
// is the recipient's result.
func (d *Deliverer) resolve(ctx context.Context, rcpt string) (route, string, error) {
	base, ext := d.split(rcpt)
	u, err := d.deps.Directory.Lookup(ctx, base)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return route{}, "", delivery.Permanent("550 5.1.1 <"+rcpt+">: no such user", err)
	case err != nil:
		// RFC 3463 §3.5 X.4.3: directory server failure.
		return route{}, "", delivery.Temporary("451 4.4.3 <"+rcpt+">: directory unavailable", err)
	}
	if u.State == directory.StateMoving {
		// Held: the queue retries, and delivers once the move has flipped the mail host.
		// RFC 3463 §3.3 X.2.1: mailbox disabled, not accepting messages (for now).
		return route{}, "", delivery.Temporary("450 4.2.1 <"+rcpt+">: mailbox being moved, held", nil)
	}
	host, err := d.cfg.Hosts.HostOf(u.MailHost)
	if err != nil {
		// X.3.5: system incorrectly configured; fixed by the admin, so retried.
		return route{}, "", delivery.Temporary("451 4.3.5 <"+rcpt+">: no route to the mailbox", err)
	}
	// The back-end knows the user by their own address: an alias or another spelling
	// is delivered as the user, with the extension kept for the back-end's Sieve and
	// folders.
	to := u.Address
	if ext != "" {
		local, domain, _ := strings.Cut(u.Address, "@")
		to = local + d.cfg.RecipientDelimiter + ext + "@" + domain
	}
	return route{Host: host, name: u.MailHost}, to, nil
}

// result converts the back-end's reply for one recipient.
func (d *Deliverer) result(rcpt, to, host string, r lmtp.RcptResult) delivery.Result {
	out := delivery.Result{Rcpt: rcpt, Reply: r.Reply}
	switch r.Status {
	case lmtp.Delivered:
		d.deps.Logger.Debug("delivered to the mail host", "rcpt", rcpt, "user", to, "host", host, "reply", r.Reply)
	case lmtp.Permanent:
		out.Err = delivery.Permanent(r.Reply, r.Err)
	default:
		out.Err = delivery.Temporary(r.Reply, r.Err)
	}
	return out
}

// split returns the address without its extension, and the extension.
func (d *Deliverer) split(rcpt string) (base, ext string) {
	if d.cfg.RecipientDelimiter == "" {
		return rcpt, ""
	}
	local, domain, ok := strings.Cut(rcpt, "@")
	if !ok {
		return rcpt, ""
	}
	if i := strings.Index(local, d.cfg.RecipientDelimiter); i > 0 {
		return local[:i] + "@" + domain, local[i+len(d.cfg.RecipientDelimiter):]
	}
	return rcpt, ""
}
