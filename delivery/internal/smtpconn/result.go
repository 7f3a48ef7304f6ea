package smtpconn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Status is the outcome class of one recipient.
type Status int

// The outcomes. A Temporary recipient should be retried later; a Permanent one bounced.
const (
	Delivered Status = iota
	Temporary
	Permanent
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Temporary:
		return "deferred"
	case Permanent:
		return "failed"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Result is what happened to one recipient.
type Result struct {
	Rcpt   string
	Status Status
	// Reply is the server's reply on one line with its code and enhanced status code
	// ("550 5.1.1 <bob@example.test>: user unknown"), or one made up by the client for a
	// failure without a reply ("451 4.4.2 connection lost: ..."). Ready for a DSN's
	// Diagnostic-Code and the queue's log.
	Reply string
	// Code is the reply code (250, 450, 550); 0 when the server gave none.
	Code int
	// Enhanced is the RFC 3463 status code ("5.1.1"), from the reply or derived.
	Enhanced string
	// Host is the server that gave the reply (host name or address), "" when none.
	Host string
	// Err is set for failures: the *smtp.SMTPError or the network error.
	Err error
	// BeforeData says the message was not sent to this recipient in this attempt (MAIL,
	// RCPT or DATA refused, or the session failed before the data): another server may
	// be tried at once without risk of delivering twice.
	BeforeData bool
}

// OK returns a Delivered result.
func OK(rcpt, host, reply string) Result {
	if reply == "" {
		reply = "250 2.0.0 ok"
	}
	return Result{Rcpt: rcpt, Status: Delivered, Reply: oneLine(reply), Code: 250, Enhanced: "2.0.0", Host: host}
}

// FromError turns an error from go-smtp (or the network) into a Result: an SMTP reply
// keeps its class (4xx temporary, 5xx permanent); anything else is a temporary failure
// with the given enhanced code ("4.4.2" connection lost, "4.4.1" no answer, ...).
func FromError(rcpt, host string, err error, enhanced string) Result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return FromReply(rcpt, host, se)
	}
	if enhanced == "" {
		enhanced = "4.4.2"
	}
	return Result{
		Rcpt: rcpt, Status: Temporary, Host: host, Err: err, Enhanced: enhanced,
		Reply: "451 " + enhanced + " " + oneLine(describe(host, err)),
	}
}

// FromReply turns an SMTP error reply into a Result.
func FromReply(rcpt, host string, se *smtp.SMTPError) Result {
	r := Result{Rcpt: rcpt, Host: host, Code: se.Code, Err: se, Status: Temporary}
	if se.Code >= 500 && se.Code < 600 {
		r.Status = Permanent
	}
	enh := se.EnhancedCode
	if enh != smtp.NoEnhancedCode && enh != (smtp.EnhancedCode{}) && enh[0] != 0 {
		r.Enhanced = fmt.Sprintf("%d.%d.%d", enh[0], enh[1], enh[2])
	} else if r.Status == Permanent {
		r.Enhanced = "5.0.0"
	} else {
		r.Enhanced = "4.0.0"
	}
	code := se.Code
	if code < 400 || code > 599 { // a reply of the wrong class where 2xx/3xx was due
		code, r.Status, r.Enhanced = 451, Temporary, "4.5.0"
	}
	r.Code = code
	r.Reply = oneLine(fmt.Sprintf("%d %s %s", code, r.Enhanced, se.Message))
	if host != "" {
		r.Reply = oneLine(fmt.Sprintf("%d %s %s (from %s)", code, r.Enhanced, se.Message, host))
	}
	return r
}

// Fail returns a failure made up by the client, with a reply built from code, enhanced
// code and text (for example 552 5.3.4 for a message over the server's SIZE).
func Fail(rcpt, host string, code int, enhanced, text string, err error) Result {
	st := Temporary
	if code >= 500 {
		st = Permanent
	}
	return Result{Rcpt: rcpt, Status: st, Host: host, Code: code, Enhanced: enhanced, Err: err,
		Reply: oneLine(fmt.Sprintf("%d %s %s", code, enhanced, text))}
}

// ForAll returns r as the result of each of rcpts: a failure of the whole transaction.
func ForAll(rcpts []string, r Result) []Result {
	out := make([]Result, len(rcpts))
	for i, rc := range rcpts {
		out[i] = r
		out[i].Rcpt = rc
	}
	return out
}

func describe(host string, err error) string {
	if host == "" {
		return err.Error()
	}
	return host + ": " + err.Error()
}

// oneLine joins a multi-line reply and bounds its length, so that it fits a log field and
// a DSN header.
func oneLine(s string) string { return strings.TrimSpace(OneLine(s, 500)) }

// OneLine turns CR, LF and tab into spaces and cuts s to max bytes: a reply or an error
// text made fit for one log field or one DSN header line.
func OneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
	}
	return s
}
