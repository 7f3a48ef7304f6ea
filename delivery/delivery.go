// Package delivery takes messages out of the spool and delivers them: a queue manager
// (Queue) that schedules attempts with exponential backoff and jitter, limits concurrency
// per destination, gives up after a maximum lifetime, sends RFC 3464 delivery status
// notifications (bounces and delay warnings, never to the null sender), detects mail loops,
// and removes a message only once every recipient has a final status recorded durably.
//
// Where a recipient goes is decided by a Router, which returns a Transport. The
// foundation's router delivers the recipients of local domains into maildirs through a
// LocalDeliverer (Maildir), an interface the mail store can implement later (Sieve, index).
//
// The functions List, Show, Flush, Hold, Release and Delete are the administrator's view of
// the queue (postqueue/postsuper style) for `portcullis queue ...`.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

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

// Permanent returns a PermanentError with the given reply.
func Permanent(reply string, err error) error { return &PermanentError{Reply: reply, Err: err} }

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

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 400 {
		s = s[:400]
	}
	return s
}

// domainOf returns the lower-cased domain of an address, "" when it has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// errorf is fmt.Errorf with the package prefix.
func errorf(format string, a ...any) error { return fmt.Errorf("delivery: "+format, a...) }
