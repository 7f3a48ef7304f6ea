// Package local is the final delivery of local recipients into the mail store: the
// queue manager reaches it through delivery/dispatch (transport "local"), and LMTP
// listeners call it directly (smtpd.Deps.Local). The message is fsynced and indexed
// before Deliver returns.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

// Config configures a Deliverer.
type Config struct {
	// Store is the mail store that receives the messages. Required.
	Store *store.Store
	// Mailbox is the folder new mail goes to. [INBOX]
	Mailbox string
	// RecipientDelimiter separates an address extension ("user+tag"): mail to user+tag
	// goes to user's mailbox. Several characters mean any of them (address.StripExtension).
	// ["+"] portcullis serve passes routing.recipient_delimiter.
	RecipientDelimiter string
	// Exists says whether a (folded, lower-cased) address has a mailbox, for example the
	// auth package's user database. When nil every address gets a mailbox on its first
	// message, as the store creates users on first use.
	Exists func(ctx context.Context, addr string) (bool, error)
	// Sieve filters mail at delivery (sieve.go): the admin's scripts and each user's
	// active script. Without Enqueue, redirect and vacation are not done (logged).
	Sieve SieveConfig
	// Enqueue queues the messages Sieve sends (redirects, vacation replies): spool.Enqueue.
	Enqueue func(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error)
	// Hostname names us in the Message-ID of vacation replies.
	Hostname string
	// Logger receives what Sieve did; default slog.Default().
	Logger *slog.Logger
}

// Deliverer writes into the mail store (store.Deliver):
// the message is fsynced and indexed before Deliver returns, IMAP sessions idling on the
// mailbox see it at once, and the store's quota and size limit apply. Mail over quota is
// deferred (452 4.2.2, retried until the queue's max_lifetime, then bounced); mail too
// big for the store and unknown users fail permanently.
type Deliverer struct {
	cfg   Config
	sieve atomic.Pointer[sieveRun] // nil when Sieve is disabled; swapped by ReloadSieve
	log   *slog.Logger
}

// New returns a Deliverer. It does no I/O.
func New(cfg Config) (*Deliverer, error) {
	if cfg.Store == nil {
		return nil, errors.New("local: no store")
	}
	if cfg.Mailbox == "" {
		cfg.Mailbox = store.Inbox
	}
	if _, err := store.CanonicalMailbox(cfg.Mailbox); err != nil {
		return nil, fmt.Errorf("local: mailbox: %w", err)
	}
	if cfg.RecipientDelimiter == "" {
		cfg.RecipientDelimiter = "+"
	}
	d := &Deliverer{cfg: cfg, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.Default()
	}
	if !cfg.Sieve.Disable {
		sr, err := newSieveRun(cfg.Sieve, cfg.RecipientDelimiter)
		if err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		d.sieve.Store(sr)
	}
	return d, nil
}

// deliveryHeaders returns the header fields a final delivery prepends: Return-Path with
// the reverse-path (RFC 5321 §4.4: the delivering system adds it) and Delivered-To, which
// lets a later delivery detect a loop through this mailbox. It returns an error when an
// address contains a line break (it would start a header field of its own).
func deliveryHeaders(from, rcpt string) (string, error) {
	if strings.ContainsAny(from+rcpt, "\r\n") {
		return "", delivery.Permanent("550 5.1.7 address contains a line break", nil)
	}
	return "Return-Path: <" + from + ">\r\nDelivered-To: " + rcpt + "\r\n", nil
}

// User returns the store user that receives mail for rcpt: lower-cased, without an
// address extension (user+tag@example.org is user@example.org).
func (d *Deliverer) User(rcpt string) (string, error) {
	local, domain, ok := address.Split(rcpt)
	if !ok {
		return "", fmt.Errorf("address %q has no local part or domain", rcpt)
	}
	local = address.StripExtension(strings.ToLower(local), d.cfg.RecipientDelimiter)
	// RFC 5321 §4.5.3.1.1 and §4.5.3.1.2: at most 64 and 255 octets.
	if len(local) > 64 || len(domain) > 255 {
		return "", fmt.Errorf("address %q is too long", rcpt)
	}
	return local + "@" + domain, nil
}

// exists checks user with Config.Exists.
func (d *Deliverer) exists(ctx context.Context, rcpt, user string) error {
	if d.cfg.Exists == nil {
		return nil
	}
	ok, err := d.cfg.Exists(ctx, user)
	if err != nil {
		return fmt.Errorf("local: looking up %s: %w", user, err)
	}
	if !ok {
		return delivery.Permanent("550 5.1.1 no such user here", fmt.Errorf("%s", rcpt))
	}
	return nil
}

// Deliver stores msg for rcpt in Config.Mailbox, after Return-Path and Delivered-To.
func (d *Deliverer) Deliver(ctx context.Context, rcpt string, env spool.Envelope, msg io.Reader) error {
	user, err := d.User(rcpt)
	if err != nil {
		return delivery.Permanent("550 5.1.3 bad destination mailbox address", err)
	}
	if err := d.exists(ctx, rcpt, user); err != nil {
		return err
	}
	hdr, err := deliveryHeaders(env.From, rcpt)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if sr := d.sieve.Load(); sr != nil && d.cfg.Mailbox == store.Inbox {
		handled, err := d.sieveDeliver(ctx, sr, rcpt, user, env, hdr, msg)
		if handled {
			return err
		}
	}
	_, err = d.cfg.Store.Deliver(ctx, user, d.cfg.Mailbox, io.MultiReader(strings.NewReader(hdr), msg), nil)
	return storeError(user, err)
}

// CheckQuota reports whether a message of size bytes fits in rcpt's quota: nil when it
// does, when the store has no quota, or when rcpt has no mailbox (an alias, which the
// queue expands, or an unknown user, which is the recipient check's business); a
// TemporaryError "452 4.2.2" when it does not fit; a PermanentError 5.1.3 for an address
// that cannot name a mailbox. An SMTP or LMTP server calls it at RCPT (RFC 5321
// §4.5.3.1.10) with the size announced by MAIL SIZE= (0 when none).
func (d *Deliverer) CheckQuota(ctx context.Context, rcpt string, size int64) error {
	user, err := d.User(rcpt)
	if err != nil {
		return delivery.Permanent("550 5.1.3 bad destination mailbox address", err)
	}
	if d.cfg.Store.Config().Quota == 0 {
		return nil
	}
	// Unknown users first: the store would create a mailbox for any name it is asked.
	if d.cfg.Exists != nil {
		ok, err := d.cfg.Exists(ctx, user)
		if err != nil {
			return fmt.Errorf("local: looking up %s: %w", user, err)
		}
		if !ok {
			return nil
		}
	}
	return storeError(user, d.cfg.Store.CheckQuota(ctx, user, max(size, 0)))
}

// storeError maps the store's errors to delivery outcomes.
func storeError(user string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrOverQuota):
		// RFC 3463 X.2.2 mailbox full: temporary, the user may make room (RFC 5321
		// §4.5.3.1.10 suggests 452 at RCPT; the queue retries until max_lifetime).
		return delivery.Temporary("452 4.2.2 mailbox full", err)
	case errors.Is(err, store.ErrTooBig):
		// RFC 3463 X.2.3: message length exceeds the administrative limit.
		return delivery.Permanent("552 5.2.3 message too big for the mailbox", err)
	case errors.Is(err, store.ErrBadName):
		return delivery.Permanent("550 5.1.3 bad destination mailbox address", err)
	}
	return fmt.Errorf("local: into the store for %s: %w", user, err)
}
