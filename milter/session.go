package milter

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/policy"
)

// session is one milter connection: one SMTP session of Postfix (or, for
// non_smtpd_milters, one locally submitted message).
type session struct {
	s  *Server
	tx *policy.Transaction

	connectDec, heloDec policy.Decision
	txnDec              []policy.Decision
	// refused is a connect or helo rejection: every later MAIL gets it again.
	refused *policy.Decision

	msg      bytes.Buffer
	reserved int64 // of s.mem, for msg
	tooBig   bool
	noMemory bool
}

var _ gomilter.Milter = (*session)(nil)

// NewConnection starts a session; an MTA that reuses the connection for another SMTP
// session (SMFIC_QUIT_NC) calls it again, and nothing of the last session remains.
func (m *session) NewConnection(gomilter.Modifier) error {
	if m.tx != nil {
		m.free()
	}
	*m = session{s: m.s, tx: policy.NewTransaction(policy.Conn{Listener: "milter"})}
	return nil
}

// Connect: host is Postfix's verified client name ("unknown" or "[addr]" when there is
// none), addr the client address.
func (m *session) Connect(host, family string, port uint16, addr string, mod gomilter.Modifier) (*gomilter.Response, error) {
	c := &m.tx.Conn
	if ip, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
		c.IP = ip.Unmap()
		for _, p := range m.s.trusted {
			if p.Contains(c.IP) {
				c.Trusted = true
			}
		}
	}
	c.Port = int(port)
	if host != "" && host != "unknown" && !strings.HasPrefix(host, "[") {
		c.Hostname = strings.TrimSuffix(host, ".")
	}
	if ptr := mod.Get(gomilter.MacroClientPTR); ptr != "" && ptr != "unknown" {
		c.PTRNames = []string{strings.TrimSuffix(ptr, ".")}
	}
	if ip, err := netip.ParseAddr(mod.Get(gomilter.MacroDaemonAddr)); err == nil {
		c.LocalIP = ip.Unmap()
	}
	c.LocalPort, _ = strconv.Atoi(mod.Get(gomilter.MacroDaemonPort))
	c.ID = mod.Get(gomilter.MacroQueueId)
	d := m.evaluate(policy.StageConnect)
	m.connectDec = d
	if d.Terminal() {
		m.refused = &d
		return m.refuse(d, nil)
	}
	return gomilter.RespContinue, nil
}

func (m *session) Helo(name string, mod gomilter.Modifier) (*gomilter.Response, error) {
	if m.refused != nil {
		return reply(*m.refused)
	}
	c := &m.tx.Conn
	c.HELO = name
	if v := mod.Get(gomilter.MacroTlsVersion); v != "" {
		c.TLS = true
		c.TLSVer = strings.Replace(v, "TLSv", "TLS", 1) // "TLSv1.3" → "TLS1.3", as smtpd writes it
		c.TLSCipher = mod.Get(gomilter.MacroCipher)
	}
	m.tx.ResetHelo()
	m.txnDec = m.txnDec[:0]
	d := m.evaluate(policy.StageHelo)
	m.heloDec = d
	if d.Terminal() {
		m.refused = &d
		return m.refuse(d, nil)
	}
	return gomilter.RespContinue, nil
}

func (m *session) MailFrom(from, esmtpArgs string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.reset()
	if m.refused != nil {
		return reply(*m.refused)
	}
	if id := mod.Get(gomilter.MacroQueueId); id != "" {
		m.tx.Conn.ID = id
	}
	m.tx.Conn.AuthUser = mod.Get(gomilter.MacroAuthAuthen)
	env := &m.tx.Envelope
	env.From = address.Parse(from)
	env.FromParams = mailParams(esmtpArgs)
	// Postfix judged the login's right to the sender (smtpd_sender_login_maps) before.
	env.FromOwned = m.tx.Conn.AuthUser != ""
	d := m.evaluate(policy.StageMail)
	if d.Terminal() {
		return m.refuse(d, nil)
	}
	m.txnDec = append(m.txnDec, d)
	return gomilter.RespContinue, nil
}

// maxRcpts bounds the recipients of one transaction, as Postfix's smtpd_recipient_limit
// (default 1000) does: each RCPT re-reads the transaction (the rules' facts), so an
// unbounded one costs quadratic time as well as memory. Past it the MTA gets 452 4.5.3
// (RFC 5321 §4.5.3.1.10) and the client sends the rest in another transaction.
const maxRcpts = 1000

var replyTooManyRcpts = policy.Reply{Code: 452, Enhanced: "4.5.3", Text: "Too many recipients"}

func (m *session) RcptTo(rcptTo, esmtpArgs string, mod gomilter.Modifier) (*gomilter.Response, error) {
	if len(m.tx.Envelope.Rcpts) >= maxRcpts {
		m.record(policy.Decision{Stage: policy.StageRcpt, Verdict: policy.Tempfail, Category: "too_many_recipients"}, replyTooManyRcpts.String(), []string{rcptTo})
		return replyOf(replyTooManyRcpts)
	}
	m.tx.Rcpt = address.Parse(rcptTo)
	d := m.evaluate(policy.StageRcpt)
	if d.Terminal() {
		return m.refuse(d, []string{m.tx.Rcpt.String()})
	}
	m.txnDec = append(m.txnDec, d)
	m.tx.Envelope.Rcpts = append(m.tx.Envelope.Rcpts, m.tx.Rcpt)
	return gomilter.RespContinue, nil
}

func (m *session) Data(gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// Header rebuilds the header field as it was written: with OptHeaderLeadingSpace (Postfix
// grants it) the value is everything after the colon, without it one space was
// swallowed; Postfix separates folded lines with LF.
func (m *session) Header(name, value string, mod gomilter.Modifier) (*gomilter.Response, error) {
	if !m.grow(len(name) + len(value) + 4) {
		return gomilter.RespContinue, nil // refused at end of message
	}
	m.msg.WriteString(name)
	m.msg.WriteByte(':')
	if mod.Protocol()&gomilter.OptHeaderLeadingSpace == 0 {
		m.msg.WriteByte(' ')
	}
	m.msg.WriteString(strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n"))
	m.msg.WriteString("\r\n")
	return gomilter.RespContinue, nil
}

func (m *session) Headers(gomilter.Modifier) (*gomilter.Response, error) {
	if m.grow(2) {
		m.msg.WriteString("\r\n")
	}
	return gomilter.RespContinue, nil
}

// BodyChunk collects the body (Postfix sends it with CRLF line ends). Past the size
// limit or the memory budget the rest is skipped and the message refused at its end.
func (m *session) BodyChunk(chunk []byte, mod gomilter.Modifier) (*gomilter.Response, error) {
	if !m.grow(len(chunk)) {
		if mod.Protocol()&gomilter.OptSkip != 0 {
			return gomilter.RespSkip, nil
		}
		return gomilter.RespContinue, nil
	}
	m.msg.Write(chunk)
	return gomilter.RespContinue, nil
}

// grow reserves n more bytes of message (and what the data stage will make of them)
// from the memory budget; false once the message is too big or the budget exhausted.
func (m *session) grow(n int) bool {
	if m.tooBig || m.noMemory {
		return false
	}
	if int64(m.msg.Len()+n) > int64(m.s.cfg.MaxMessageSize) {
		m.tooBig = true
		m.free()
		return false
	}
	need := int64(float64(m.msg.Len()+n)*(1+policyFactor)) + 64<<10
	if need > m.reserved {
		more := max(need-m.reserved, 256<<10)
		if !m.s.mem.TryAcquire(more) {
			m.noMemory = true
			m.free()
			return false
		}
		m.reserved += more
	}
	return true
}

// free drops the message and gives its memory back.
func (m *session) free() {
	m.msg = bytes.Buffer{}
	if m.reserved > 0 {
		m.s.mem.Release(m.reserved)
		m.reserved = 0
	}
}

var (
	replyTooBig   = policy.Reply{Code: 552, Enhanced: "5.3.4", Text: "Message too big"}
	replyNoMemory = policy.Reply{Code: 451, Enhanced: "4.3.1", Text: "Insufficient system resources, try again later"}
)

// EndOfMessage runs the data stage over the whole message and applies the outcome of
// the transaction: a refusal, a discard, a quarantine (Postfix's hold queue) or the
// headers the policies and the rules add (Authentication-Results, X-Spam-*,
// add_header), on top of the message in the order smtpd writes them.
func (m *session) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	defer m.free()
	if id := mod.Get(gomilter.MacroQueueId); id != "" {
		m.tx.Conn.ID = id
	}
	switch {
	case m.tooBig:
		m.logRefusal(replyTooBig, "too_big")
		m.record(policy.Decision{Stage: policy.StageData, Verdict: policy.Reject, Category: "too_big"}, replyTooBig.String(), m.rcpts())
		return replyOf(replyTooBig)
	case m.noMemory:
		m.s.log.Warn("milter message refused: max_data_memory exhausted", "id", m.tx.Conn.ID, "client_ip", m.tx.Conn.IP.String())
		m.record(policy.Decision{Stage: policy.StageData, Verdict: policy.Tempfail, Category: "no_memory"}, replyNoMemory.String(), m.rcpts())
		return replyOf(replyNoMemory)
	}
	raw := m.msg.Bytes()
	m.tx.Message = policy.NewMessage(raw, time.Now())
	// The data stage may take long (clamd, Bayes on a big message): tell Postfix we
	// are alive so that milter_content_timeout does not expire.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mod.Progress()
			}
		}
	}()
	d := m.evaluate(policy.StageData)
	close(stop)
	<-done
	if d.Terminal() {
		return m.refuse(d, m.rcpts())
	}
	decs := append([]policy.Decision{m.connectDec, m.heloDec}, m.txnDec...)
	v, headers, _ := policy.Outcome(append(decs, d)...)
	m.recordOutcome(append(decs, d), d, v)
	switch v {
	case policy.Discard:
		m.s.log.Info("milter message discarded", "id", m.tx.Conn.ID, "client_ip", m.tx.Conn.IP.String())
		return gomilter.RespDiscard, nil
	case policy.Quarantine:
		reason := "portcullis: " + ruleOf(append(decs, d), policy.Quarantine)
		if mod.Actions()&gomilter.OptQuarantine == 0 {
			// Postfix always offers it; an MTA that does not gets the message marked.
			m.s.log.Warn("milter: the MTA does not offer quarantine; the message is accepted with a header", "id", m.tx.Conn.ID)
			headers = append(headers, policy.Header{Name: "X-Portcullis-Quarantine", Value: reason})
		} else if err := mod.Quarantine(reason); err != nil {
			return nil, err
		}
	}
	if mod.Actions()&(gomilter.OptAddHeader|gomilter.OptChangeHeader) == 0 {
		if len(headers) > 0 {
			m.s.log.Warn("milter: the MTA does not offer header changes; headers not added", "id", m.tx.Conn.ID, "headers", len(headers))
		}
		return gomilter.RespAccept, nil
	}
	// Insert at the top, last first, so that they read in order above Postfix's own
	// Received field, as smtpd prepends them. With OptHeaderLeadingSpace the MTA writes
	// the value as given, so it carries the space after the colon.
	space := ""
	if mod.Protocol()&gomilter.OptHeaderLeadingSpace != 0 {
		space = " "
	}
	for i := len(headers) - 1; i >= 0; i-- {
		h, ok := headers[i].Clean()
		if !ok {
			continue
		}
		if err := mod.InsertHeader(0, h.Name, space+strings.ReplaceAll(h.Value, "\r\n", "\n")); err != nil {
			return nil, err
		}
	}
	return gomilter.RespAccept, nil
}

// refuse answers a terminal decision and records it.
func (m *session) refuse(d policy.Decision, rcpts []string) (*gomilter.Response, error) {
	m.record(d, policy.ReplyOf(d).String(), rcpts)
	return reply(d)
}

// record hands one answer to the decision log, if any.
func (m *session) record(d policy.Decision, reply string, rcpts []string) {
	if m.s.rec != nil {
		m.s.rec.Decided(m.tx, d, reply, rcpts)
	}
}

// recordOutcome records the verdict of an accepted message for each recipient: the
// decision that discarded or quarantined it, else the data stage's.
func (m *session) recordOutcome(decs []policy.Decision, data policy.Decision, v policy.Verdict) {
	if m.s.rec == nil {
		return
	}
	d := data
	if v == policy.Discard || v == policy.Quarantine {
		for _, x := range decs {
			if x.Verdict == v {
				d = x
				break
			}
		}
	}
	d.Verdict = v
	reply := map[policy.Verdict]string{policy.Discard: "discard", policy.Quarantine: "hold"}[v]
	if reply == "" {
		reply = "accept"
	}
	m.s.rec.Decided(m.tx, d, reply, m.rcpts())
}

// rcpts returns the transaction's accepted recipients.
func (m *session) rcpts() []string {
	out := make([]string, len(m.tx.Envelope.Rcpts))
	for i, a := range m.tx.Envelope.Rcpts {
		out[i] = a.String()
	}
	return out
}

func ruleOf(decs []policy.Decision, v policy.Verdict) string {
	for _, d := range decs {
		if d.Verdict == v && d.Rule != "" {
			return "rule " + d.Rule
		}
	}
	return "rules"
}

// Abort ends the mail transaction (RSET, or the client went away): the connection's
// state stays.
func (m *session) Abort(gomilter.Modifier) error {
	m.reset()
	return nil
}

func (m *session) reset() {
	m.tx.Reset()
	m.txnDec = m.txnDec[:0]
	m.free()
	m.tooBig, m.noMemory = false, false
}

func (m *session) Unknown(string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (m *session) Cleanup(gomilter.Modifier) {
	if m.tx != nil {
		m.free()
	}
}

// evaluate runs one stage with the policy timeout; a panic in the engine becomes a
// tempfail, as in smtpd.
func (m *session) evaluate(st policy.Stage) (d policy.Decision) {
	defer func() {
		if p := recover(); p != nil {
			m.s.log.Error("milter engine panicked", "id", m.tx.Conn.ID, "stage", st.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d = policy.Decision{Stage: st, Verdict: policy.Tempfail, Reply: policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Internal error, try again later"}}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), m.s.cfg.PolicyTimeout)
	defer cancel()
	d = m.s.eng.Evaluate(ctx, st, m.tx)
	d.Stage = st
	m.logDecision(st, d)
	return d
}

func (m *session) logDecision(st policy.Stage, d policy.Decision) {
	tx := m.tx
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
	m.s.log.Info("milter stage", attrs...)
}

func (m *session) logRefusal(r policy.Reply, reason string) {
	m.s.log.Info("milter message refused", "id", m.tx.Conn.ID, "client_ip", m.tx.Conn.IP.String(), "reply", r.String(), "reason", reason)
}

// reply is the milter reply of a terminal decision: SMFIR_REPLYCODE with portcullis's
// code, enhanced code and text, which Postfix gives its client as they are.
func reply(d policy.Decision) (*gomilter.Response, error) { return replyOf(policy.ReplyOf(d)) }

func replyOf(r policy.Reply) (*gomilter.Response, error) {
	text := r.Text
	if r.Enhanced != "" {
		text = r.Enhanced + " " + text
	}
	return gomilter.RejectWithCodeAndReason(uint16(r.Code), text)
}

// mailParams parses MAIL FROM's ESMTP arguments ("SIZE=1234 BODY=8BITMIME") as smtpd
// records them: upper-case keys.
func mailParams(args string) map[string]string {
	f := strings.Fields(args)
	if len(f) == 0 {
		return nil
	}
	p := make(map[string]string, len(f))
	for _, a := range f {
		k, v, _ := strings.Cut(a, "=")
		p[strings.ToUpper(k)] = v
	}
	return p
}
