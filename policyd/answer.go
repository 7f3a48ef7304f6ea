package policyd

import (
	"context"
	"fmt"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/policy"
)

// stagesOf maps protocol_state to the portcullis stages that must have run before the
// request is answered: Postfix asks only where check_policy_service is listed (most
// sites: smtpd_recipient_restrictions, so only RCPT), and the earlier stages run then,
// once per transaction, as smtpd runs them with delay_reject. DATA and END-OF-MESSAGE
// have no stage of their own: END-OF-MESSAGE carries no message (Postfix gives the
// policy service the envelope only), so the data stage's rules, which read the message,
// cannot run; they answer what the envelope stages left to say (a discard, a hold, a
// header to prepend).
var stagesOf = map[string]policy.Stage{
	"CONNECT":        policy.StageConnect,
	"EHLO":           policy.StageHelo,
	"HELO":           policy.StageHelo,
	"MAIL":           policy.StageMail,
	"RCPT":           policy.StageRcpt,
	"DATA":           policy.StageMail,
	"BDAT":           policy.StageMail,
	"END-OF-MESSAGE": policy.StageMail,
}

// Answer returns the action for one request (the value of "action="). An error means
// the request breaks the protocol (no request=smtpd_access_policy, no protocol_state):
// the caller must close the connection without replying.
func (s *Server) Answer(ctx context.Context, req Request) (string, error) {
	if r := req["request"]; r != "smtpd_access_policy" {
		return "", fmt.Errorf("%w: request=%.40q, want smtpd_access_policy", ErrMalformed, r)
	}
	state, ok := req["protocol_state"]
	if !ok {
		return "", fmt.Errorf("%w: no protocol_state", ErrMalformed)
	}
	last, ok := stagesOf[strings.ToUpper(state)]
	if !ok {
		return "DUNNO", nil // VRFY, ETRN: nothing of ours judges them
	}
	key := req["instance"]
	if key == "" {
		// Without an instance the request is its own transaction.
		t := newTxn()
		return s.answer(ctx, t, req, last, state), nil
	}
	t := s.txns.get(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	a := s.answer(ctx, t, req, last, state)
	if strings.EqualFold(state, "END-OF-MESSAGE") {
		s.txns.forget(key)
	}
	return a, nil
}

// maxRcpts bounds the recipients of one transaction, as Postfix's smtpd_recipient_limit
// (default 1000) does: each RCPT request re-reads the transaction (the rules' facts, the
// decisions so far), so an unbounded one costs quadratic time as well as memory. A site
// that raises smtpd_recipient_limit gets 452 past 1000; the client sends the rest in
// another transaction.
const maxRcpts = 1000

const tooManyRcpts = "452 4.5.3 Too many recipients"

// answer runs the stages up to last that have not run for this transaction, and turns
// the outcome into an action. t is locked.
func (s *Server) answer(ctx context.Context, t *txn, req Request, last policy.Stage, state string) string {
	s.update(t, req)
	rcpt := last == policy.StageRcpt && strings.EqualFold(state, "RCPT")
	if t.terminal != nil {
		a := action(*t.terminal)
		s.record(t, *t.terminal, a, rcpt)
		return a
	}
	for st := policy.StageConnect; st <= last && st < policy.StageRcpt; st++ {
		if t.done[st] {
			continue
		}
		t.done[st] = true
		d := s.evaluate(ctx, st, t.tx)
		if d.Terminal() {
			t.terminal = &d
			a := action(d)
			s.record(t, d, a, rcpt)
			return a
		}
		t.decs = append(t.decs, d)
	}
	var dryRun []string
	if last == policy.StageRcpt {
		if len(t.tx.Envelope.Rcpts) >= maxRcpts {
			// A peer repeating one instance must not grow its transaction without end
			// (RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client retries).
			s.record(t, policy.Decision{Stage: policy.StageRcpt, Verdict: policy.Tempfail, Category: "too_many_recipients"}, tooManyRcpts, rcpt)
			return tooManyRcpts
		}
		d := s.evaluate(ctx, policy.StageRcpt, t.tx)
		if d.Terminal() {
			a := action(d)
			s.record(t, d, a, rcpt)
			return a
		}
		t.tx.Envelope.Rcpts = append(t.tx.Envelope.Rcpts, t.tx.Rcpt)
		t.decs = append(t.decs, d)
		dryRun = d.DryRun
		a := t.pending(dryRun)
		if rcpt {
			s.record(t, d, a, true)
		}
		return a
	}
	return t.pending(dryRun)
}

// record hands one answer to the decision log: every refusal, and each accepted
// recipient (one record per recipient, as smtpd writes them). The recipient is the
// request's at RCPT; a refusal at another protocol state concerns none.
func (s *Server) record(t *txn, d policy.Decision, action string, atRcpt bool) {
	if s.rec == nil {
		return
	}
	var rcpts []string
	if r := t.tx.Rcpt.String(); atRcpt && r != "" {
		rcpts = []string{r}
	}
	s.rec.Decided(t.tx, d, action, rcpts)
}

// evaluate runs one stage; a panic in the engine becomes a tempfail, as in smtpd.
func (s *Server) evaluate(ctx context.Context, st policy.Stage, tx *policy.Transaction) (d policy.Decision) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("policyd engine panicked", "id", tx.Conn.ID, "stage", st.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d = policy.Decision{Stage: st, Verdict: policy.Tempfail, Reply: policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Internal error, try again later"}}
		}
	}()
	d = s.eng.Evaluate(ctx, st, tx)
	d.Stage = st
	s.logDecision(st, tx, d)
	return d
}

func (s *Server) logDecision(st policy.Stage, tx *policy.Transaction, d policy.Decision) {
	attrs := []any{"id", tx.Conn.ID, "stage", st.String(), "client_ip", tx.Conn.IP.String(), "verdict", d.Verdict.String()}
	if st >= policy.StageMail {
		attrs = append(attrs, "from", tx.Envelope.From.String())
	}
	if st == policy.StageRcpt {
		attrs = append(attrs, "rcpt", tx.Rcpt.String())
	}
	if d.Rule != "" {
		attrs = append(attrs, "rule", d.Rule)
	}
	if d.Terminal() {
		attrs = append(attrs, "reply", policy.ReplyOf(d).String())
	}
	s.log.Info("policyd stage", attrs...)
}

// action is Postfix's action for a terminal decision: the reply itself ("554 5.7.1
// text"; access(5): "4NN text", "5NN text"), so Postfix answers the client with
// portcullis's code, enhanced code and text.
func action(d policy.Decision) string { return policy.ReplyOf(d).String() }

// pending is the action for a request the rules did not refuse: a discard or a hold
// decided by any stage so far (once), then the next header the rules added that
// Postfix has not prepended yet (PREPEND takes one header per request), then WARN for
// log_only rules that matched this request, else DUNNO: Postfix goes on with its own
// restrictions (OK would skip them).
func (t *txn) pending(dryRun []string) string {
	v, _, _ := policy.Outcome(t.decs...)
	switch {
	case v == policy.Discard && !t.saidDiscard:
		t.saidDiscard = true
		return "DISCARD " + ruleText(t.decs, policy.Discard)
	case v == policy.Quarantine && !t.saidHold && !t.saidDiscard:
		t.saidHold = true
		return "HOLD " + ruleText(t.decs, policy.Quarantine)
	}
	for _, h := range t.tx.HeadersToAdd() {
		h, ok := h.Clean()
		if !ok {
			continue
		}
		line := h.Name + ": " + h.Unfolded()
		if t.prepended[line] {
			continue
		}
		if t.prepended == nil {
			t.prepended = map[string]bool{}
		}
		t.prepended[line] = true
		return "PREPEND " + line
	}
	if len(dryRun) > 0 {
		return "WARN log_only rules matched: " + strings.Join(dryRun, ", ")
	}
	return "DUNNO"
}

// ruleText names the rule that gave verdict v, for Postfix's log.
func ruleText(decs []policy.Decision, v policy.Verdict) string {
	for _, d := range decs {
		if d.Verdict == v && d.Rule != "" {
			return "by portcullis rule " + policy.ReplyText(d.Rule, "")
		}
	}
	return "by portcullis"
}

// update copies the request's attributes into the transaction. Postfix gives every
// attribute it knows at each request (the HELO name, the SASL login and the sender can
// appear between requests), so they are refreshed each time.
func (s *Server) update(t *txn, req Request) {
	c := &t.tx.Conn
	if c.ID == "" {
		c.ID = req["queue_id"]
		if c.ID == "" {
			c.ID = req["instance"]
		}
	}
	c.Listener = "policyd"
	if ip, err := netip.ParseAddr(req["client_address"]); err == nil {
		c.IP = ip.Unmap()
		c.Trusted = false
		for _, p := range s.trusted {
			if p.Contains(c.IP) {
				c.Trusted = true
			}
		}
	}
	c.Port, _ = strconv.Atoi(req["client_port"])
	if ip, err := netip.ParseAddr(req["server_address"]); err == nil {
		c.LocalIP = ip.Unmap()
	}
	c.LocalPort, _ = strconv.Atoi(req["server_port"])
	// client_name is Postfix's verified name (FCrDNS), reverse_client_name the PTR
	// name; both are "unknown" when there is none.
	if n := req["client_name"]; n != "unknown" {
		c.Hostname = strings.TrimSuffix(n, ".")
	}
	c.PTRNames = nil
	if n := req["reverse_client_name"]; n != "" && n != "unknown" {
		c.PTRNames = []string{strings.TrimSuffix(n, ".")}
	}
	c.HELO = req["helo_name"]
	c.AuthUser = req["sasl_username"]
	if p := req["encryption_protocol"]; p != "" {
		c.TLS = true
		c.TLSVer = strings.Replace(p, "TLSv", "TLS", 1) // "TLSv1.3" → "TLS1.3", as smtpd writes it
		c.TLSCipher = req["encryption_cipher"]
	}
	env := &t.tx.Envelope
	// Postfix judged the login's right to the sender (smtpd_sender_login_maps with
	// reject_sender_login_mismatch) before asking: an authenticated sender is owned.
	env.FromOwned = c.AuthUser != ""
	if from, ok := req["sender"]; ok && from != env.From.Raw {
		env.From = address.Parse(from)
	}
	if sz := req["size"]; sz != "" && sz != "0" {
		env.FromParams = map[string]string{"SIZE": sz}
	}
	t.tx.Rcpt = address.Address{}
	if rcpt := req["recipient"]; rcpt != "" {
		t.tx.Rcpt = address.Parse(rcpt)
	}
}
