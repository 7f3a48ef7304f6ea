// Package postfixlog writes the log lines Postfix writes for the same traffic, so that
// tools made for Postfix logs — pflogsumm first — read portcullis's: "connect from" and
// "disconnect from", "NOQUEUE: reject: RCPT from ...", "client=", cleanup's
// "message-id=", qmgr's "from=<>, size=, nrcpt=" and "removed", and the delivery agents'
// "to=<>, relay=, delay=, dsn=, status=sent|deferred|bounced". Timestamps are RFC 3339 in
// UTC (Postfix's maillog_file format with enable_long_queue_ids' long timestamps), which
// pflogsumm reads as well as the traditional syslog ones.
//
// What maps to what: a message smtpd queued is a queue id with client=, message-id= and
// a qmgr line; a quarantined one is held (cleanup's "hold:", no qmgr line, as Postfix's
// HOLD action); a discarded one is "NOQUEUE: discard:"; a refusal is one "NOQUEUE:
// reject:" line per recipient at RCPT, one per message at DATA and one per connection at
// CONNECT, HELO and MAIL, temporary refusals included (Postfix logs 4xx rejects so too).
// Deliveries are logged only for the queue ids this writer saw arrive, so the queue's own
// bounce messages are not counted as traffic.
package postfixlog

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// Writer writes Postfix-format lines. Its methods are safe for concurrent use; each line
// is one write.
type Writer struct {
	mu       sync.Mutex
	w        io.Writer
	c        io.Closer
	host     string
	nextPID  int
	sessions map[string]int      // session id -> the pseudo pid of its smtpd
	queued   map[string]struct{} // queue ids that arrived, until removed
}

// maxQueued bounds the queue ids the writer remembers (a queue that never empties).
const maxQueued = 1 << 20

// New writes to w as host (the syslog host field).
func New(w io.Writer, host string) *Writer {
	if host == "" {
		host = "localhost"
	}
	return &Writer{w: w, host: host, nextPID: 1000, sessions: map[string]int{}, queued: map[string]struct{}{}}
}

// Open appends to the file path (created 0600).
func Open(path, host string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("postfixlog: %w", err)
	}
	w := New(f, host)
	w.c = f
	return w, nil
}

// Close closes the file Open opened.
func (w *Writer) Close() error {
	if w.c == nil {
		return nil
	}
	return w.c.Close()
}

// line writes one line; the caller holds w.mu.
func (w *Writer) line(t time.Time, proc string, pid int, format string, args ...any) {
	msg := oneLine(fmt.Sprintf(format, args...))
	fmt.Fprintf(w.w, "%s %s postfix/%s[%d]: %s\n", t.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), w.host, proc, pid, msg)
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r < ' ' {
			return ' '
		}
		return r
	}, s)
}

// smtpdName is the process name of a listener: submission ports log as Postfix's
// master.cf services of those names do.
func smtpdName(listener string) string {
	switch {
	case strings.HasPrefix(listener, "submissions"), listener == "smtps":
		return "smtps/smtpd"
	case strings.HasPrefix(listener, "submission"):
		return "submission/smtpd"
	}
	return "smtpd"
}

// client is Postfix's host[ip] of a client.
func client(name string, ip netip.Addr) string {
	if name == "" {
		name = "unknown"
	}
	addr := "127.0.0.1" // a unix socket: Postfix says so for local clients
	if ip.IsValid() {
		addr = ip.String()
	}
	return name + "[" + addr + "]"
}

func (w *Writer) pid(session string) int {
	if p, ok := w.sessions[session]; ok {
		return p
	}
	w.nextPID++
	if session != "" {
		w.sessions[session] = w.nextPID
	}
	return w.nextPID
}

// Connect logs "connect from".
func (w *Writer) Connect(t time.Time, session, listener string, ip netip.Addr, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line(t, smtpdName(listener), w.pid(session), "connect from %s", client(name, ip))
}

// Disconnect logs "disconnect from" and forgets the session.
func (w *Writer) Disconnect(t time.Time, session, listener string, ip netip.Addr, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line(t, smtpdName(listener), w.pid(session), "disconnect from %s", client(name, ip))
	delete(w.sessions, session)
}

// Decision logs one answer: recs are its records (one per recipient, or one for a
// connection, HELO or MAIL refusal), at is the stage the answer was given at.
func (w *Writer) Decision(at string, recs []decisionlog.Record) {
	if len(recs) == 0 {
		return
	}
	r := recs[0]
	w.mu.Lock()
	defer w.mu.Unlock()
	proc, pid := smtpdName(r.Listener), w.pid(r.Session)
	from := client(r.ClientName, r.ClientIP)
	proto := "ESMTP"
	env := func(rcpt string) string {
		s := fmt.Sprintf("from=<%s>", r.Sender)
		if rcpt != "" {
			s += fmt.Sprintf(" to=<%s>", rcpt)
		}
		return s + fmt.Sprintf(" proto=%s helo=<%s>", proto, r.HELO)
	}
	switch {
	case r.QueueID != "" && (r.Verdict == decisionlog.VerdictAccept || r.Verdict == decisionlog.VerdictQuarantine):
		q := r.QueueID
		extra := ""
		if r.AuthUser != "" {
			extra = ", sasl_method=PLAIN, sasl_username=" + r.AuthUser
		}
		w.line(r.Time, proc, pid, "%s: client=%s%s", q, from, extra)
		w.line(r.Time, "cleanup", pid, "%s: message-id=<%s>", q, r.MessageID)
		if len(w.queued) < maxQueued {
			w.queued[q] = struct{}{}
		}
		if r.Verdict == decisionlog.VerdictQuarantine {
			// Postfix's HOLD: the message waits outside the active queue, no qmgr line.
			w.line(r.Time, "cleanup", pid, "%s: hold: header Subject: %s from %s; %s: %s", q, r.Subject, from, env(r.Recipient), reason(r))
			return
		}
		w.line(r.Time, "qmgr", pid, "%s: from=<%s>, size=%d, nrcpt=%d (queue active)", q, r.Sender, r.Size, len(recs))
	case r.Verdict == decisionlog.VerdictDiscard:
		w.line(r.Time, proc, pid, "NOQUEUE: discard: DATA from %s: %s: %s; %s", from, r.Reply, reason(r), env(r.Recipient))
	case r.Verdict == decisionlog.VerdictReject || r.Verdict == decisionlog.VerdictTempfail:
		switch at {
		case "rcpt":
			for _, x := range recs {
				w.line(x.Time, proc, pid, "NOQUEUE: reject: RCPT from %s: %s; %s", from, rcptReply(x.Reply, x.Recipient), env(x.Recipient))
			}
		case "data":
			w.line(r.Time, proc, pid, "NOQUEUE: reject: DATA from %s: %s; %s", from, r.Reply, env(r.Recipient))
		case "connect":
			w.line(r.Time, proc, pid, "NOQUEUE: reject: CONNECT from %s: %s; proto=SMTP", from, r.Reply)
		case "helo":
			w.line(r.Time, proc, pid, "NOQUEUE: reject: EHLO from %s: %s; proto=%s helo=<%s>", from, r.Reply, proto, r.HELO)
		default:
			w.line(r.Time, proc, pid, "NOQUEUE: reject: MAIL from %s: %s; %s", from, r.Reply, env(""))
		}
	}
}

// rcptReply puts the recipient after the codes, as Postfix does ("550 5.1.1 <bob@x>:
// Recipient address rejected: ...").
func rcptReply(reply, rcpt string) string {
	f := strings.SplitN(reply, " ", 3)
	if len(f) == 3 && strings.Count(f[1], ".") == 2 {
		return fmt.Sprintf("%s %s <%s>: %s", f[0], f[1], rcpt, f[2])
	}
	if len(f) >= 2 {
		return fmt.Sprintf("%s <%s>: %s", f[0], rcpt, strings.Join(f[1:], " "))
	}
	return reply
}

func reason(r decisionlog.Record) string {
	if r.Rule != "" {
		return r.Rule
	}
	return r.Category
}

// Outcome logs a delivery result of a queue id this writer saw arrive (others — the
// queue's own bounces — are not traffic), and "removed" when the message left the queue.
func (w *Writer) Outcome(o decisionlog.Outcome, arrived time.Time, removed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.queued[o.QueueID]; !ok {
		return
	}
	proc, relay := "local", "local"
	switch {
	case strings.HasPrefix(o.Relay, "lmtp:"):
		proc, relay = "lmtp", strings.TrimPrefix(o.Relay, "lmtp:")
	case strings.HasPrefix(o.Relay, "smtp:"), strings.HasPrefix(o.Relay, "relay:"):
		proc, relay = "smtp", o.Relay[strings.IndexByte(o.Relay, ':')+1:]
	case o.Relay == "":
		proc, relay = "error", "none"
	case o.Relay != "local":
		proc, relay = "smtp", o.Relay
	}
	status := map[string]string{decisionlog.OutcomeDelivered: "sent", decisionlog.OutcomeDeferred: "deferred", decisionlog.OutcomeBounced: "bounced"}[o.Outcome]
	if status == "" {
		return
	}
	dsn := o.DSN
	if dsn == "" {
		dsn = map[string]string{"sent": "2.0.0", "deferred": "4.0.0", "bounced": "5.0.0"}[status]
	}
	delay := o.Time.Sub(arrived).Seconds()
	if arrived.IsZero() || delay < 0 {
		delay = 0
	}
	text := strings.NewReplacer("(", "[", ")", "]").Replace(o.Reason) // a parenthesis ends pflogsumm's reason
	w.line(o.Time, proc, w.nextPID+1, "%s: to=<%s>, relay=%s, delay=%.2f, delays=0/0/0/%.2f, dsn=%s, status=%s (%s)",
		o.QueueID, strings.ToLower(o.Recipient), relay, delay, delay, dsn, status, text)
	if removed {
		w.line(o.Time, "qmgr", w.nextPID+2, "%s: removed", o.QueueID)
		delete(w.queued, o.QueueID)
	}
}
