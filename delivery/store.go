package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

// StoreConfig configures a StoreDeliverer.
type StoreConfig struct {
	// Store is the mail store that receives the messages. Required.
	Store *store.Store `yaml:"-"`
	// Mailbox is the folder new mail goes to. [INBOX]
	Mailbox string `yaml:"mailbox"`
	// RecipientDelimiter separates an address extension ("user+tag"): mail to user+tag
	// goes to user's mailbox. ["+"; "-" for qmail style]
	RecipientDelimiter string `yaml:"recipient_delimiter"`
	// Exists says whether a (folded, lower-cased) address has a mailbox, for example the
	// auth package's user database. When nil every address gets a mailbox on its first
	// message, as the store creates users on first use.
	Exists func(ctx context.Context, addr string) (bool, error) `yaml:"-"`
}

// StoreDeliverer is the LocalDeliverer that writes into the mail store (store.Deliver):
// the message is fsynced and indexed before Deliver returns, IMAP sessions idling on the
// mailbox see it at once, and the store's quota and size limit apply. Mail over quota is
// deferred (452 4.2.2, retried until the queue's max_lifetime, then bounced); mail too
// big for the store and unknown users fail permanently.
type StoreDeliverer struct {
	cfg StoreConfig
}

// NewStoreDeliverer returns a StoreDeliverer. It does no I/O.
func NewStoreDeliverer(cfg StoreConfig) (*StoreDeliverer, error) {
	if cfg.Store == nil {
		return nil, errors.New("delivery: store deliverer: no store")
	}
	if cfg.Mailbox == "" {
		cfg.Mailbox = store.Inbox
	}
	if _, err := store.CanonicalMailbox(cfg.Mailbox); err != nil {
		return nil, fmt.Errorf("delivery: store deliverer: mailbox: %w", err)
	}
	if cfg.RecipientDelimiter == "" {
		cfg.RecipientDelimiter = "+"
	}
	return &StoreDeliverer{cfg: cfg}, nil
}

// TemporaryError is a failure worth retrying that has an SMTP reply of its own, such as
// "452 4.2.2 mailbox full": the queue defers the recipient, and an LMTP listener answers
// the reply as it is.
type TemporaryError struct {
	Reply string // a 4xx SMTP reply with enhanced status code
	Err   error
}

func (e *TemporaryError) Error() string {
	if e.Err != nil {
		return e.Reply + ": " + e.Err.Error()
	}
	return e.Reply
}

func (e *TemporaryError) Unwrap() error { return e.Err }

// Temporary returns a TemporaryError with the given reply.
func Temporary(reply string, err error) error { return &TemporaryError{Reply: reply, Err: err} }

// ReplyOf returns the SMTP reply ("550 5.1.1 ...") carried by a PermanentError or a
// TemporaryError in err's chain, and false when there is none.
func ReplyOf(err error) (string, bool) {
	var p *PermanentError
	if errors.As(err, &p) && p.Reply != "" {
		return p.Reply, true
	}
	var t *TemporaryError
	if errors.As(err, &t) && t.Reply != "" {
		return t.Reply, true
	}
	return "", false
}

// DeliveryHeaders returns the header fields a final delivery prepends: Return-Path with
// the reverse-path (RFC 5321 §4.4: the delivering system adds it) and Delivered-To, which
// lets a later delivery detect a loop through this mailbox. It returns an error when an
// address contains a line break (it would start a header field of its own).
func DeliveryHeaders(from, rcpt string) (string, error) {
	if strings.ContainsAny(from+rcpt, "\r\n") {
		return "", Permanent("550 5.1.7 address contains a line break", nil)
	}
	return "Return-Path: <" + from + ">\r\nDelivered-To: " + rcpt + "\r\n", nil
}

// User returns the store user that receives mail for rcpt: lower-cased, without an
// address extension (user+tag@example.org is user@example.org).
func (d *StoreDeliverer) User(rcpt string) (string, error) {
	i := strings.LastIndexByte(rcpt, '@')
	if i <= 0 || i == len(rcpt)-1 {
		return "", fmt.Errorf("address %q has no local part or domain", rcpt)
	}
	local, domain := strings.ToLower(rcpt[:i]), strings.ToLower(rcpt[i+1:])
	if j := strings.Index(local, d.cfg.RecipientDelimiter); j > 0 {
		local = local[:j]
	}
	// RFC 5321 §4.5.3.1.1 and §4.5.3.1.2: at most 64 and 255 octets.
	if len(local) > 64 || len(domain) > 255 {
		return "", fmt.Errorf("address %q is too long", rcpt)
	}
	return local + "@" + domain, nil
}

// exists checks user with Config.Exists.
func (d *StoreDeliverer) exists(ctx context.Context, rcpt, user string) error {
	if d.cfg.Exists == nil {
		return nil
	}
	ok, err := d.cfg.Exists(ctx, user)
	if err != nil {
		return fmt.Errorf("delivery: looking up %s: %w", user, err)
	}
	if !ok {
		return Permanent("550 5.1.1 no such user here", fmt.Errorf("%s", rcpt))
	}
	return nil
}

// Deliver stores msg for rcpt in Config.Mailbox, after Return-Path and Delivered-To.
func (d *StoreDeliverer) Deliver(ctx context.Context, rcpt string, env spool.Envelope, msg io.Reader) error {
	user, err := d.User(rcpt)
	if err != nil {
		return Permanent("550 5.1.3 bad destination mailbox address", err)
	}
	if err := d.exists(ctx, rcpt, user); err != nil {
		return err
	}
	hdr, err := DeliveryHeaders(env.From, rcpt)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
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
func (d *StoreDeliverer) CheckQuota(ctx context.Context, rcpt string, size int64) error {
	user, err := d.User(rcpt)
	if err != nil {
		return Permanent("550 5.1.3 bad destination mailbox address", err)
	}
	if d.cfg.Store.Config().Quota == 0 {
		return nil
	}
	// Unknown users first: the store would create a mailbox for any name it is asked.
	if err := d.exists(ctx, rcpt, user); IsPermanent(err) {
		return nil
	} else if err != nil {
		return err
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
		return Temporary("452 4.2.2 mailbox full", err)
	case errors.Is(err, store.ErrTooBig):
		// RFC 3463 X.2.3: message length exceeds the administrative limit.
		return Permanent("552 5.2.3 message too big for the mailbox", err)
	case errors.Is(err, store.ErrBadName):
		return Permanent("550 5.1.3 bad destination mailbox address", err)
	}
	return fmt.Errorf("delivery: into the store for %s: %w", user, err)
}
