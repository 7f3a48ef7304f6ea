package delivery

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
	"github.com/portcullis-mail/portcullis/spool"
)

// dsnKind is what a delivery status notification reports.
type dsnKind int

const (
	dsnFailed  dsnKind = iota // permanent failure or expiry: a bounce
	dsnDelayed                // still trying: a delay warning
)

// dsnRcpt is one recipient reported in a DSN.
type dsnRcpt struct {
	Rcpt  string
	Reply string // "550 5.1.1 no such user"
	When  time.Time
}

// Limits on what a DSN returns of the original message: the whole message with RET=FULL
// up to maxReturnFull, otherwise (and by default, as RFC 3461 §4.3 leaves to us) the
// header only, up to maxReturnHeader.
const (
	maxReturnFull   = 1 << 20
	maxReturnHeader = 64 << 10
)

// notifyAllows reports whether the recipient's NOTIFY parameter (RFC 3461 §4.1) asks for
// this kind of DSN. Without NOTIFY we act as if FAILURE,DELAY had been given.
func notifyAllows(env spool.Envelope, rcpt string, kind dsnKind) bool {
	n := strings.ToUpper(env.Notify[rcpt])
	if n == "" {
		return true
	}
	want := "FAILURE"
	if kind == dsnDelayed {
		want = "DELAY"
	}
	for _, f := range strings.Split(n, ",") {
		if strings.TrimSpace(f) == want {
			return true
		}
	}
	return false
}

// statusOf returns the enhanced status code (RFC 3463) in an SMTP reply, or one derived
// from the reply's class.
func statusOf(reply string, kind dsnKind) string {
	f := strings.Fields(reply)
	if len(f) >= 2 && len(f[0]) == 3 && isEnhancedCode(f[1]) {
		return f[1]
	}
	if kind == dsnDelayed {
		return "4.0.0"
	}
	if len(f) >= 1 && len(f[0]) == 3 && f[0][0] == '4' {
		return "4.0.0"
	}
	return "5.0.0"
}

func isEnhancedCode(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || len(p[0]) != 1 || (p[0][0] != '2' && p[0][0] != '4' && p[0][0] != '5') {
		return false
	}
	for _, x := range p[1:] {
		if len(x) == 0 || len(x) > 3 {
			return false
		}
		for _, c := range []byte(x) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// buildDSN returns the envelope and the message of a delivery status notification about
// env (RFC 3464 multipart/report, RFC 6522). The DSN goes from the null sender to env.From,
// so it can never cause another bounce (RFC 5321 §4.5.5). The caller must not build one
// when env.From is empty.
func buildDSN(hostname string, env spool.Envelope, msg io.ReaderAt, kind dsnKind, rcpts []dsnRcpt, retryUntil time.Time, now time.Time) (spool.Envelope, io.Reader, error) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	boundary := "dsn-" + hex.EncodeToString(rnd[:])
	date := now.Format(time.RFC1123Z)

	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\r\n", a...) }
	subject := "Undelivered Mail Returned to Sender"
	if kind == dsnDelayed {
		subject = "Delayed Mail (still being retried)"
	}
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", hostname)
	w("To: <%s>", env.From)
	w("Subject: %s", subject)
	w("Date: %s", date)
	w("Message-ID: <%s.dsn@%s>", hex.EncodeToString(rnd[:8]), hostname)
	w("Auto-Submitted: auto-replied") // RFC 3834 §5
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status;")
	w("\tboundary=\"%s\"", boundary)
	w("")
	w("This is a MIME-encapsulated delivery status notification.")
	w("")

	// Part 1: for humans.
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("Content-Transfer-Encoding: 8bit")
	w("")
	w("This is the mail system at %s.", hostname)
	w("")
	if kind == dsnFailed {
		w("Your message could not be delivered to one or more recipients.")
		w("It is attached below. The mail system said:")
	} else {
		w("Your message could not be delivered yet to one or more recipients.")
		w("The mail system will keep trying until %s;", retryUntil.Format(time.RFC1123Z))
		w("you do not need to send it again. The last attempt said:")
	}
	w("")
	for _, r := range rcpts {
		w("<%s>: %s", r.Rcpt, oneLine(r.Reply))
	}
	w("")

	// Part 2: RFC 3464 §2.2 per-message fields, §2.3 per-recipient fields.
	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; %s", hostname)
	if env.EnvID != "" {
		w("Original-Envelope-Id: %s", oneLine(env.EnvID))
	}
	if !env.ReceivedAt.IsZero() {
		w("Arrival-Date: %s", env.ReceivedAt.Format(time.RFC1123Z))
	}
	for _, r := range rcpts {
		w("")
		w("Final-Recipient: rfc822; %s", r.Rcpt)
		if kind == dsnFailed {
			w("Action: failed")
		} else {
			w("Action: delayed")
		}
		w("Status: %s", statusOf(r.Reply, kind))
		if r.Reply != "" {
			w("Diagnostic-Code: smtp; %s", oneLine(r.Reply))
		}
		if !r.When.IsZero() {
			w("Last-Attempt-Date: %s", r.When.Format(time.RFC1123Z))
		}
		if kind == dsnDelayed && !retryUntil.IsZero() {
			w("Will-Retry-Until: %s", retryUntil.Format(time.RFC1123Z))
		}
	}
	w("")

	// Part 3: the original message or its header.
	w("--%s", boundary)
	full := strings.EqualFold(env.Ret, "FULL") && env.Size <= maxReturnFull && kind == dsnFailed
	var orig io.Reader
	if full {
		w("Content-Type: message/rfc822")
		w("")
		orig = io.NewSectionReader(msg, 0, env.Size)
	} else {
		w("Content-Type: text/rfc822-headers")
		w("")
		h, err := readHeader(io.NewSectionReader(msg, 0, env.Size), maxReturnHeader)
		if err != nil {
			return spool.Envelope{}, nil, err
		}
		orig = bytes.NewReader(h)
	}
	tail := "\r\n--" + boundary + "--\r\n"

	denv := spool.Envelope{
		From:       "", // the null reverse-path: a DSN is never bounced
		To:         []string{env.From},
		ReceivedAt: now,
		Listener:   "dsn",
		Notify:     map[string]string{env.From: "NEVER"},
	}
	return denv, io.MultiReader(&b, orig, strings.NewReader(tail)), nil
}

// readHeader returns the header block of a message (mailheader.ReadBlock: up to the
// empty line, which is left out), at most max bytes of it, with CRLF line endings. Lines
// that are no header field are kept: a DSN returns the header as it was.
func readHeader(r io.Reader, max int) ([]byte, error) {
	h, err := mailheader.ReadBlock(r, max)
	if err != nil && !errors.Is(err, mailheader.ErrTooLong) {
		return nil, fmt.Errorf("delivery: reading message header: %w", err)
	}
	return mailheader.CRLF(h), nil
}

// countReceived counts the Received header fields of a message (RFC 5321 §6.3: a loop
// shows as too many of them).
func countReceived(r io.Reader) (int, error) {
	b, err := mailheader.ReadBlock(r, 1<<20)
	if err != nil && !errors.Is(err, mailheader.ErrTooLong) {
		return 0, fmt.Errorf("delivery: reading message header: %w", err)
	}
	var buf [64]mailheader.Field
	n := 0
	for _, f := range mailheader.Parse(buf[:0], b, 0).Fields {
		if f.Is("Received") {
			n++
		}
	}
	return n, nil
}
