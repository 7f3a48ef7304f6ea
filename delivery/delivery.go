// Package delivery takes messages out of the spool and delivers them: the queue manager
// (Manager, Postfix's qmgr) schedules attempts with exponential backoff and jitter, limits
// concurrency per destination, gives up after a maximum lifetime, sends RFC 3464 delivery
// status notifications (bounces and delay warnings, never to the null sender), detects
// mail loops, and removes a message only once every recipient has a final status
// recorded durably.
//
// Where a recipient goes is decided by a Router, which returns a Transport: in portcullis,
// delivery/dispatch joins the routing maps (delivery/route) to the transports (the store
// through delivery/local, LMTP through delivery/lmtp, SMTP through delivery/relay).
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/portcullis-mail/portcullis/delivery/internal/smtpconn"
	"github.com/portcullis-mail/portcullis/spool"
)

// Transport delivers one message to a group of recipients that share a destination.
type Transport interface {
	// Deliver delivers msg to rcpts and returns one Result per recipient, in order. The
	// message is read from the start for each call. A nil Err means delivered; an error
	// that IsPermanent reports as permanent fails the recipient (it is bounced); any other
	// error defers it.
	Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []Result
}

// Result is the outcome for one recipient.
type Result struct {
	Rcpt  string
	Err   error  // nil: delivered
	Reply string // what the destination said ("250 2.0.0 ok", "550 5.1.1 no such user"), for logs and DSNs
}

// Route says how to reach one recipient.
type Route struct {
	Transport Transport
	// Dest names the destination for per-destination concurrency ("local",
	// "smtp:example.org", "lmtp:127.0.0.1:24"). Recipients with the same Transport and Dest
	// are delivered in one call.
	Dest string
	// Rcpt is the address to deliver to, after any rewriting; "" means the recipient as
	// queued.
	Rcpt string
}

// Router maps a recipient to its route. An error that IsPermanent fails the recipient (no
// such domain or user); another error defers it.
type Router interface {
	Route(ctx context.Context, rcpt string) (Route, error)
}

// RouterFunc adapts a function to Router.
type RouterFunc func(ctx context.Context, rcpt string) (Route, error)

// Route calls f.
func (f RouterFunc) Route(ctx context.Context, rcpt string) (Route, error) { return f(ctx, rcpt) }

// PermanentError is a failure that retrying will not fix: the recipient is failed and
// bounced.
type PermanentError struct {
	Reply string // an SMTP reply with enhanced status code, e.g. "550 5.1.1 no such user"
	Err   error
}

func (e *PermanentError) Error() string {
	if e.Err != nil {
		return e.Reply + ": " + e.Err.Error()
	}
	return e.Reply
}

func (e *PermanentError) Unwrap() error { return e.Err }

// SMTPReply returns the reply; with Temporary it classifies the error by behaviour for
// those who do not import this package (smtpd answers it on LMTP and at RCPT).
func (e *PermanentError) SMTPReply() string { return e.Reply }

// Temporary reports false: the recipient fails.
func (e *PermanentError) Temporary() bool { return false }

// Permanent returns a PermanentError with the given reply.
func Permanent(reply string, err error) error { return &PermanentError{Reply: reply, Err: err} }

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

// SMTPReply returns the reply.
func (e *TemporaryError) SMTPReply() string { return e.Reply }

// Temporary reports true: the recipient is deferred.
func (e *TemporaryError) Temporary() bool { return true }

// Temporary returns a TemporaryError with the given reply.
func Temporary(reply string, err error) error { return &TemporaryError{Reply: reply, Err: err} }

// ReplyOf returns the SMTP reply ("550 5.1.1 ...") carried by an error in err's chain
// (a PermanentError, a TemporaryError, or any error with a method SMTPReply() string),
// and false when there is none.
func ReplyOf(err error) (string, bool) {
	var r interface{ SMTPReply() string }
	if errors.As(err, &r) && r.SMTPReply() != "" {
		return r.SMTPReply(), true
	}
	return "", false
}

// IsPermanent reports whether err (or an error it wraps) is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// replyOf returns the SMTP-style reply to record for a result.
func replyOf(r Result) string {
	if r.Reply != "" {
		return r.Reply
	}
	if s, ok := ReplyOf(r.Err); ok {
		return s
	}
	if r.Err != nil {
		return "451 4.3.0 " + oneLine(r.Err.Error())
	}
	return "250 2.0.0 delivered"
}

// oneLine makes a reply or error text fit one line of a DSN or the queue's log.
func oneLine(s string) string { return smtpconn.OneLine(s, 400) }

// errorf is fmt.Errorf with the package prefix.
func errorf(format string, a ...any) error { return fmt.Errorf("delivery: "+format, a...) }

// ReaderAt returns msg as an io.ReaderAt with its size, for transports that send a
// message more than once (one LMTP transaction per back-end, one expansion per alias):
// the queue hands them an *io.SectionReader over the spool, used as it is; anything else
// is read into memory, at most max bytes (a larger message is a permanent 552 5.3.4).
func ReaderAt(msg io.Reader, max int64) (io.ReaderAt, int64, error) {
	if sr, ok := msg.(interface {
		io.ReaderAt
		Size() int64
	}); ok {
		return sr, sr.Size(), nil
	}
	b, err := io.ReadAll(io.LimitReader(msg, max+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading the message: %w", err)
	}
	if int64(len(b)) > max {
		return nil, 0, Permanent(fmt.Sprintf("552 5.3.4 message larger than %d bytes", max), nil)
	}
	return bytes.NewReader(b), int64(len(b)), nil
}
