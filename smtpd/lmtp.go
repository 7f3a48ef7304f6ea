package smtpd

// LMTP listeners (mode: lmtp, RFC 2033) take final delivery from trusted front-ends, as
// Postfix delivers to Dovecot or Cyrus: LHLO instead of EHLO, no AUTH and no relay
// control, recipients checked at RCPT (Deps.Recipients, then Deps.Quota), and at the end
// of DATA one reply per recipient (RFC 2033 §4.2), each given once the message is in that
// recipient's mailbox (Deps.Local). There is no queue in between: a 250 means the store
// has the message on disk. Who may connect is decided before the greeting: a TCP client
// must be in trusted_networks, and a unix socket is open to whoever may write to it (it
// is created with mode 0666: restrict the directory that holds it).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/internal/sockaddr"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/spool"
)

var (
	replyLMTPUntrusted = policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "LMTP is open to trusted networks only"}
	replyDeliverError  = policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Mailbox write failed, try again later"}
	replyNoQuarantine  = policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Quarantine unavailable, try again later"}
)

// validateLMTPListener checks what only lmtp listeners may do: listen on a unix socket.
func validateLMTPListener(l ListenerConfig) error {
	if !sockaddr.IsUnix(l.Addr) {
		return nil
	}
	if l.Mode != ModeLMTP {
		return fmt.Errorf("smtpd: listener %q: unix sockets are for lmtp listeners only", l.Name)
	}
	if _, p := sockaddr.Split(l.Addr); p == "" || p[0] != '/' {
		return fmt.Errorf("smtpd: listener %q: addr %q: want unix:/absolute/path", l.Name, l.Addr)
	}
	if l.ProxyProtocol {
		return fmt.Errorf("smtpd: listener %q: proxy_protocol on a unix socket", l.Name)
	}
	return nil
}

// checkLMTPDeps checks that the listeners have the collaborators they need.
func checkLMTPDeps(cfg Config, deps Deps) error {
	lmtp, other := false, false
	for _, l := range cfg.Listeners {
		if l.Mode == ModeLMTP {
			lmtp = true
		} else {
			other = true
		}
	}
	if other && deps.Spool == nil {
		return errors.New("smtpd: Deps.Spool is required")
	}
	if lmtp && deps.Local == nil {
		return errors.New("smtpd: an lmtp listener needs Deps.Local")
	}
	return nil
}

// listen opens a listener's socket: TCP (with listenTCP when set, Deps.Listen), or a
// unix socket replacing a dead server's, mode 0666 as Dovecot's lmtp socket.
func listen(lc ListenerConfig, listenTCP func(network, address string) (net.Listener, error)) (net.Listener, error) {
	return sockaddr.Listen(lc.Addr, listenTCP)
}

// checkQuota asks Deps.Quota whether the announced size fits in addr's mailbox.
func (st *connState) checkQuota(addr address.Address) error {
	size, _ := strconv.ParseInt(st.tx.Envelope.FromParams["SIZE"], 10, 64)
	ctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.PolicyTimeout)
	err := st.srv.deps.Quota(ctx, addr.String(), size)
	cancel()
	if err == nil {
		return nil
	}
	if r, ok := parseReply(err); ok {
		reason := "quota"
		if r.Code/100 == 5 {
			reason = "bad_mailbox"
		}
		return st.refuse(policy.StageRcpt, r, reason)
	}
	// The delivery will know better; a failed lookup is no reason to refuse.
	st.srv.log.Warn("smtp quota check failed", "id", st.tx.Conn.ID, "rcpt", addr.String(), "err", err)
	return nil
}

// parseReply returns the 4xx or 5xx reply a delivery error carries: an error in err's
// chain with a method SMTPReply() string (delivery's PermanentError and TemporaryError).
func parseReply(err error) (policy.Reply, bool) {
	var re interface{ SMTPReply() string }
	if !errors.As(err, &re) {
		return policy.Reply{}, false
	}
	s := re.SMTPReply()
	code, rest, _ := strings.Cut(s, " ")
	n, err2 := strconv.Atoi(code)
	if err2 != nil || len(code) != 3 || n < 400 || n > 599 {
		return policy.Reply{}, false
	}
	r := policy.Reply{Code: n, Text: rest}
	if enh, text, _ := strings.Cut(rest, " "); len(enh) >= 5 && enh[0] == code[0] && enh[1] == '.' {
		var a, b, c int
		if k, _ := sscanEnhanced(enh, &a, &b, &c); k == 3 {
			r.Enhanced, r.Text = enh, text
		}
	}
	r.Text = policy.ReplyText(r.Text, "Delivery failed")
	return r, true
}

// LMTPData is go-smtp's DATA (and BDAT) for lmtp listeners: read the message, run the
// data stage once (a rejection is every recipient's reply), then deliver to each
// recipient through Deps.Local and give each its own status (RFC 2033 §4.2). Statuses go
// out as deliveries finish: go-smtp writes them in RCPT order as they are set.
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	st := s.st
	m, err := st.receive(r, "lmtp")
	defer st.mu.Unlock()
	if m == nil {
		return err
	}
	defer m.release()
	msgID, raw, env, hdr, start := m.id, m.raw, m.env, m.header, m.start
	msg := func() io.Reader { return io.MultiReader(strings.NewReader(hdr), bytes.NewReader(raw)) }
	if env.Quarantine {
		return st.lmtpQuarantine(msgID, env, msg())
	}

	// One delivery per distinct recipient; a recipient given twice gets the same status
	// twice (go-smtp expects one per RCPT).
	done := make(map[string]error, len(env.To))
	for i, rcpt := range env.To {
		arg := st.rcptArgs[i]
		if err, ok := done[rcpt]; ok {
			status.SetStatus(arg, err)
			continue
		}
		dstart := time.Now()
		ctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.QueueTimeout)
		derr := st.srv.deps.Local.Deliver(ctx, rcpt, env, msg())
		cancel()
		st.srv.m.observe("deliver", time.Since(dstart).Seconds())
		reply := st.lmtpStatus(msgID, rcpt, derr, len(raw))
		done[rcpt] = reply
		status.SetStatus(arg, reply)
		st.lmtpDecided(rcpt, derr)
	}
	st.srv.log.Info("lmtp message done", "id", msgID, "client_ip", st.tx.Conn.IP.String(), "from", env.From,
		"rcpts", env.To, "size", len(raw), "duration_ms", time.Since(start).Milliseconds())
	st.evaluate(policy.StageQueued)
	return nil // every recipient has its status
}

// lmtpStatus turns one recipient's delivery outcome into its LMTP reply, and logs and
// counts it.
func (st *connState) lmtpStatus(msgID, rcpt string, err error, size int) error {
	name := st.l.cfg.Name
	if err == nil {
		st.messagesN.Add(1)
		st.srv.m.message(name, "delivered")
		st.srv.m.reply(name, "data", 250)
		st.srv.log.Info("lmtp delivered", "id", msgID, "rcpt", rcpt, "size", size)
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK delivered id=" + msgID}
	}
	r, ok := parseReply(err)
	if !ok {
		r = replyDeliverError
	}
	outcome := "tempfailed"
	if r.Code/100 == 5 {
		outcome = "rejected"
	}
	st.srv.m.message(name, outcome)
	st.srv.m.reply(name, "data", r.Code)
	st.srv.log.Warn("lmtp delivery failed", "id", msgID, "rcpt", rcpt, "reply", r.String(), "err", err)
	return smtpError(r)
}

// lmtpQuarantine puts a message the rules quarantined into the queue (held there for
// review, as from the MX listener); every recipient gets the queue's answer.
func (st *connState) lmtpQuarantine(msgID string, env spool.Envelope, msg io.Reader) error {
	name := st.l.cfg.Name
	if st.srv.deps.Spool == nil {
		st.srv.m.message(name, "tempfailed")
		return st.refuse(policy.StageData, replyNoQuarantine, "no_quarantine")
	}
	ctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.QueueTimeout)
	id, err := st.srv.deps.Spool.Enqueue(ctx, env, msg)
	cancel()
	if err != nil {
		st.srv.log.Error("lmtp quarantine enqueue failed", "id", msgID, "err", err)
		st.srv.m.message(name, "tempfailed")
		return st.refuse(policy.StageData, replyQueueError, "queue_error")
	}
	st.messagesN.Add(1)
	st.srv.m.message(name, "quarantined")
	st.srv.log.Info("lmtp message quarantined", "id", msgID, "queue_id", id, "from", env.From, "rcpts", env.To)
	st.decided(policy.StageData, st.verdictDecision(policy.Quarantine), "250 2.0.0 OK queued as "+id, nil, id)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

// lmtpDecided records one recipient's delivery as the answer of the transaction.
func (st *connState) lmtpDecided(rcpt string, derr error) {
	if st.srv.deps.Decisions == nil {
		return
	}
	r := policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "OK delivered id=" + st.curMsg}
	if derr != nil {
		var ok bool
		if r, ok = parseReply(derr); !ok {
			r = replyDeliverError
		}
	}
	d := policy.Decision{Stage: policy.StageData, Verdict: policy.Accept}
	switch r.Code / 100 {
	case 4:
		d.Verdict, d.Category = policy.Tempfail, "delivery"
	case 5:
		d.Verdict, d.Category = policy.Reject, "delivery"
	}
	ev := DecisionEvent{Tx: st.tx, Decision: d, At: policy.StageData, Reply: r.String(), Rcpts: []string{rcpt},
		MsgID: st.curMsg, Size: st.curSize, Delivered: true, Time: time.Now()}
	st.srv.deps.Decisions.RecordDecision(&ev)
}
