package smtpd

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/policy"
)

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.command(); err != nil {
		return err
	}
	st.resetTxn()
	if *st.l.cfg.RequireAuth && st.tx.Conn.AuthUser == "" {
		// RFC 4954 §6.
		return st.refuse(policy.StageMail, policy.Reply{Code: 530, Enhanced: "5.7.0", Text: "Authentication required"}, "auth_required")
	}
	if err := st.limitCommand(policy.StageMail, ratelimitMail, ""); err != nil {
		return err
	}
	if st.pending != nil && !*st.srv.cfg.DelayReject {
		return st.answerPending(policy.StageMail)
	}
	addr, err := parseMailbox(from)
	if errors.Is(err, errAddrSyntax) {
		return st.refuse(policy.StageMail, policy.Reply{Code: 553, Enhanced: "5.1.7", Text: "Bad sender address syntax"}, "sender_syntax")
	}
	if err := st.checkQueueSpace(opts); err != nil {
		return err
	}
	st.tx.Envelope.From = addr
	st.tx.Envelope.FromParams = mailParams(opts)
	if err := st.senderOwned(); err != nil {
		return err
	}
	st.inTxn.Store(true)
	if st.pending != nil {
		return nil // judged at RCPT (delay_reject)
	}
	d := st.evaluate(policy.StageMail)
	d = st.withMilters(policy.StageMail, d, func(ms MilterSession) policy.Decision { return ms.Mail(st.ctx, st.tx) })
	if d.Terminal() {
		if *st.srv.cfg.DelayReject {
			st.pending, st.pendingStage = &d, policy.StageMail
			return nil
		}
		st.inTxn.Store(false)
		st.decided(policy.StageMail, d, replyOf(d).String(), nil, "")
		return st.fail(policy.StageMail, replyOf(d))
	}
	st.txnDec = append(st.txnDec, d)
	return nil
}

// senderOwned sets Envelope.FromOwned for an authenticated client: whether its user owns
// the sender (Deps.Senders; without it every sender). A failed lookup is a 451.
func (st *connState) senderOwned() error {
	user := st.tx.Conn.AuthUser
	if user == "" {
		return nil
	}
	v := st.srv.deps.Senders
	if v == nil {
		st.tx.Envelope.FromOwned = true
		return nil
	}
	ctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.PolicyTimeout)
	owned, err := v.SenderOwned(ctx, user, st.tx.Envelope.From)
	cancel()
	if err != nil {
		st.srv.log.Warn("smtp sender ownership lookup failed", "id", st.tx.Conn.ID, "user", user, "from", st.tx.Envelope.From.String(), "err", err)
		return st.refuse(policy.StageMail, replySenderLookupFail, "sender_lookup_error")
	}
	st.tx.Envelope.FromOwned = owned
	return nil
}

// answerPending answers the remembered rejection (delay_reject) at stage, logging it
// again with what is known now (the recipient at RCPT).
func (st *connState) answerPending(stage policy.Stage) error {
	d := *st.pending
	r := replyOf(d)
	st.logDecision(stage, d, r.String(), "delayed from "+d.Stage.String())
	st.decided(stage, d, r.String(), nil, "")
	return st.fail(stage, r)
}

func mailParams(opts *smtp.MailOptions) map[string]string {
	if opts == nil {
		return nil
	}
	p := map[string]string{}
	if opts.Body != "" {
		p["BODY"] = string(opts.Body)
	}
	if opts.Size > 0 {
		p["SIZE"] = strconv.FormatInt(opts.Size, 10)
	}
	if opts.UTF8 {
		p["SMTPUTF8"] = ""
	}
	if opts.RequireTLS {
		p["REQUIRETLS"] = ""
	}
	if opts.Auth != nil {
		p["AUTH"] = *opts.Auth
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

var (
	replyRelayDenied = policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "Relay access denied"}
	replyRcptSyntax  = policy.Reply{Code: 501, Enhanced: "5.1.3", Text: "Bad recipient address syntax"}
	replyUnknownUser = policy.Reply{Code: 550, Enhanced: "5.1.1", Text: "User unknown"}
	replyLookupFail  = policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Recipient lookup failed, try again later"}

	replySenderLookupFail = policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Sender lookup failed, try again later"}
)

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.command(); err != nil {
		return err
	}
	addr, err := parseMailbox(to)
	st.tx.Rcpt = addr
	if err := st.limitCommand(policy.StageRcpt, ratelimitRcpt, addr.String()); err != nil {
		return err
	}
	if st.pending != nil {
		return st.answerPending(policy.StageRcpt)
	}
	if errors.Is(err, errAddrSyntax) || to == "" {
		return st.refuse(policy.StageRcpt, replyRcptSyntax, "rcpt_syntax")
	}
	lmtp := st.l.cfg.Mode == ModeLMTP
	// LMTP takes final delivery from trusted front-ends only (see admit): no relay
	// control, every recipient is ours.
	mayRelay := st.tx.Conn.AuthUser != "" || st.tx.Conn.Trusted || lmtp
	if !mayRelay {
		// Sender-specified routing (user%other@local, "user@other"@local,
		// other!user@local) is a relay attempt from an untrusted client.
		if errors.Is(err, errAddrRouting) {
			return st.refuse(policy.StageRcpt, replyRelayDenied, "relay_routing")
		}
		if !st.srv.local[addr.Domain] {
			return st.refuse(policy.StageRcpt, replyRelayDenied, "relay")
		}
	}
	if v := st.srv.deps.Recipients; v != nil && (st.srv.local[addr.Domain] || lmtp) {
		ctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.PolicyTimeout)
		ok, err := v.ValidRecipient(ctx, addr)
		cancel()
		if err != nil {
			st.srv.log.Warn("smtp recipient lookup failed", "id", st.tx.Conn.ID, "rcpt", addr.String(), "err", err)
			return st.refuse(policy.StageRcpt, replyLookupFail, "rcpt_lookup_error")
		}
		if !ok {
			return st.refuse(policy.StageRcpt, replyUnknownUser, "unknown_user")
		}
	}
	if st.srv.deps.Quota != nil && (st.srv.local[addr.Domain] || lmtp) {
		if err := st.checkQuota(addr); err != nil {
			return err
		}
	}
	d := st.evaluate(policy.StageRcpt)
	d = st.withMilters(policy.StageRcpt, d, func(ms MilterSession) policy.Decision { return ms.Rcpt(st.ctx, st.tx) })
	if d.Terminal() {
		st.decided(policy.StageRcpt, d, replyOf(d).String(), nil, "")
		return st.fail(policy.StageRcpt, replyOf(d))
	}
	st.txnDec = append(st.txnDec, d)
	st.tx.Envelope.Rcpts = append(st.tx.Envelope.Rcpts, addr)
	st.rcptArgs = append(st.rcptArgs, to)
	return nil
}

// finalVerdict merges the non-terminal verdicts of the connection and the transaction:
// a discard anywhere discards the message, a quarantine quarantines it.
func (st *connState) finalVerdict() (v policy.Verdict, headers []policy.Header, tags []string, score float64) {
	v, headers, tags = policy.Outcome(append([]policy.Decision{st.connectDec, st.heloDec}, st.txnDec...)...)
	return v, headers, tags, st.tx.Score() // the transaction's running total
}

func joinAddrs(as []address.Address) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.String())
	}
	return b.String()
}
