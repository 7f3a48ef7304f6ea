package mailhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/portcullis-mail/portcullis/delivery"
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
	base, ext := d.split(rcpt)
	u, err := d.deps.Directory.Lookup(ctx, base)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return delivery.Permanent("550 5.1.1 <"+rcpt+">: no such user", err)
	case err != nil:
		// RFC 3463 §3.5 X.4.3: directory server failure.
		return delivery.Temporary("451 4.4.3 <"+rcpt+">: directory unavailable", err)
	}
	if u.State == directory.StateMoving {
		// Held: the queue retries, and delivers once the move has flipped the mail host.
		// RFC 3463 §3.3 X.2.1: mailbox disabled, not accepting messages (for now).
		return delivery.Temporary("450 4.2.1 <"+rcpt+">: mailbox being moved, held", nil)
	}
	host, err := d.cfg.Hosts.HostOf(u.MailHost)
	if err != nil {
		// X.3.5: system incorrectly configured; fixed by the admin, so retried.
		return delivery.Temporary("451 4.3.5 <"+rcpt+">: no route to the mailbox", err)
	}
	// The back-end knows the user by their own address: an alias or another spelling
	// is delivered as the user, with the extension kept for the back-end's Sieve and
	// folders.
	to := u.Address
	if ext != "" {
		local, domain, _ := strings.Cut(u.Address, "@")
		to = local + d.cfg.RecipientDelimiter + ext + "@" + domain
	}
	ra, size, err := delivery.ReaderAt(msg, d.cfg.MaxMessageBytes)
	if err != nil {
		return err
	}
	res, err := d.deps.LMTP.Deliver(ctx, host.LMTP, env.From, []string{to}, ra, size)
	if err != nil {
		if delivery.IsPermanent(err) {
			return err
		}
		return delivery.Temporary("451 4.4.1 <"+rcpt+">: mail host "+u.MailHost+" unavailable", err)
	}
	if len(res) != 1 {
		return fmt.Errorf("mailhost: %d LMTP results for one recipient", len(res))
	}
	r := res[0]
	switch r.Status {
	case lmtp.Delivered:
		d.deps.Logger.Debug("delivered to the mail host", "rcpt", rcpt, "user", u.Address, "host", u.MailHost, "reply", r.Reply)
		return nil
	case lmtp.Permanent:
		return delivery.Permanent(r.Reply, r.Err)
	}
	return delivery.Temporary(r.Reply, r.Err)
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
